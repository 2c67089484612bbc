"""Condition transition times follow the API conventions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sipfleet.operator.conditions import Condition, merge_conditions

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_conditions_are_stamped_now() -> None:
    out = merge_conditions(None, [Condition("Ready", "True", "Serving", "ok")], T0, 3)
    assert out == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Serving",
            "message": "ok",
            "lastTransitionTime": "2026-01-01T12:00:00Z",
            "observedGeneration": 3,
        }
    ]


def test_same_status_keeps_transition_time_but_updates_reason() -> None:
    before = merge_conditions(None, [Condition("Scaling", "True", "ScalingOut")], T0)
    after = merge_conditions(before, [Condition("Scaling", "True", "Transferring", "m")], T1)
    assert after[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert after[0]["reason"] == "Transferring"


def test_flipped_status_moves_transition_time() -> None:
    before = merge_conditions(None, [Condition("Degraded", "False", "AsExpected")], T0)
    after = merge_conditions(before, [Condition("Degraded", "True", "MetricsStale")], T1)
    assert after[0]["lastTransitionTime"] == "2026-01-01T12:05:00Z"


def test_order_follows_current_and_absent_ones_are_dropped() -> None:
    before = merge_conditions(None, [Condition("Old", "True", "X")], T0)
    after = merge_conditions(
        before, [Condition("Scaling", "False", "Stable"), Condition("Ready", "True", "S")], T1
    )
    assert [c["type"] for c in after] == ["Scaling", "Ready"]
