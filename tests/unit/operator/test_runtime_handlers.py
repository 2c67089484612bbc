"""The conference timer: which ticks run a pass."""

from __future__ import annotations

import pytest
from sipfleet.operator.handlers import conference


@pytest.mark.parametrize(
    ("elapsed", "interval", "due"),
    [
        (2.0, 2, True),
        (1.7, 2, True),  # an early tick after a late one
        (0.9, 2, False),
        (4.0, 5, False),  # 5 s rounds up to 3 ticks of 2 s
        (5.6, 5, True),
        (2.0, 1, True),
    ],
)
def test_a_conference_pass_is_due_on_whole_ticks(
    elapsed: float, interval: float, due: bool
) -> None:
    assert conference.due(elapsed, interval, 2.0) is due
