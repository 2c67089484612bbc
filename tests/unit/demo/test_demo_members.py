"""Pure parts of the demo's load generator (its SIP behaviour runs in tests/e2e/test_demo.py)."""

from __future__ import annotations

import pytest
from sipfleet.demo.members import MAX_RETRY_AFTER, retry_after
from sipfleet.node.sip import Headers, SipResponse


@pytest.mark.parametrize(
    ("value", "wait"),
    [("1", 1.0), ("0", 0.2), ("30", MAX_RETRY_AFTER), ("1;duration=5", 1.0), ("soon", 1.0)],
)
def test_retry_after_is_bounded(value: str, wait: float) -> None:
    response = SipResponse(480, "Group Full", Headers([("Retry-After", value)]))
    assert retry_after(response) == wait


def test_retry_after_defaults_to_a_second() -> None:
    assert retry_after(SipResponse(480, "Group Full")) == 1.0
