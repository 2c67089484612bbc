"""The takeover's ring timer (RFC 3261 9.1: CANCEL an INVITE that rings unanswered)
in virtual time."""

from __future__ import annotations

import pytest
from sipfleet.node import takeover
from sipfleet.node.takeover import RING_TIMEOUT, Ringing


def run(core: Ringing, until: float) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    while (deadline := core.next_deadline()) is not None and deadline <= until:
        out += [(deadline, tx) for tx in core.tick(deadline)]
    return out


def test_an_invite_that_rings_unanswered_is_cancelled_once() -> None:
    core = Ringing()
    core.provisional("tx1", 100, 0.0)  # Trying: not ringing yet
    assert core.next_deadline() is None
    core.provisional("tx1", 180, 1.0)
    core.provisional("tx1", 183, 5.0)  # a later provisional does not move the deadline
    assert run(core, 1.0 + RING_TIMEOUT - 0.001) == []
    assert run(core, 100.0) == [(1.0 + RING_TIMEOUT, "tx1")]
    assert core.next_deadline() is None


def test_a_final_answer_stops_the_timer() -> None:
    core = Ringing(timeout=2.0)
    core.provisional("answered", 180, 0.0)
    core.provisional("rejected", 180, 0.5)
    core.provisional("rings", 180, 1.0)
    core.final("answered")
    core.final("rejected")
    core.final("never-rang")  # no timer: nothing happens
    assert run(core, 10.0) == [(3.0, "rings")]


def test_the_timeout_is_read_when_the_timers_are_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(takeover, "RING_TIMEOUT", 0.5)
    core = Ringing()
    core.provisional("tx", 180, 0.0)
    assert core.next_deadline() == 0.5
