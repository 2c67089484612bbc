"""Kubernetes-style status conditions (type, status, reason, message, times).

``lastTransitionTime`` only moves when a condition's status flips, as the API
conventions ask; reason and message may change without a transition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str = ""


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes times."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    current: Iterable[Condition],
    now: datetime,
    observed_generation: int | None = None,
) -> list[dict[str, Any]]:
    """The new ``status.conditions`` list: ``current`` stamped with transition times.

    Conditions absent from ``current`` are dropped; the order follows ``current``.
    """
    before = {c.get("type"): c for c in previous or []}
    out: list[dict[str, Any]] = []
    for cond in current:
        old = before.get(cond.type) or {}
        kept = old.get("lastTransitionTime") if old.get("status") == cond.status else None
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": kept or timestamp(now),
        }
        if observed_generation is not None:
            entry["observedGeneration"] = observed_generation
        out.append(entry)
    return out
