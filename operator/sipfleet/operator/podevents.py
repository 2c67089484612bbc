"""Which Pod events matter to the control loop (pure).

The control loop runs on a timer; a server Pod turning Ready (a new node
can take members now) or starting to terminate (its replacement should
start now) also starts a pass at once, for the conferences the Pod serves.
kopf delivers every watch event of a Pod (each status write of the kubelet);
``PodTransitions`` remembers per Pod what was last seen and reports only
those two transitions, plus a Pod's first sighting and its removal (which
change the fleet's disruption budget).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sipfleet.operator import pods as podlib

Change = Literal["added", "ready", "terminating", "gone"]
PASS_CHANGES: frozenset[Change] = frozenset({"ready", "terminating"})
"""Changes that start a control-loop pass."""
BUDGET_CHANGES: frozenset[Change] = frozenset({"added", "terminating", "gone"})
"""Changes that alter the fleet's Pod count as its disruption budget sees it."""


@dataclass(frozen=True)
class PodSeen:
    ready: bool
    terminating: bool


@dataclass
class PodTransitions:
    """Per-Pod memory (by uid) of readiness and termination."""

    seen: dict[str, PodSeen] = field(default_factory=dict)

    def change(self, event_type: str | None, pod: Mapping[str, Any]) -> Change | None:
        """The transition this watch event makes, or None for "nothing that matters".

        ``event_type`` is the watch event's type (ADDED, MODIFIED, DELETED;
        None for kopf's initial listing, treated as ADDED).
        """
        uid = str(pod.get("metadata", {}).get("uid", ""))
        if event_type == "DELETED":
            return "gone" if self.seen.pop(uid, None) is not None else None
        now = PodSeen(podlib.pod_ready(pod), podlib.terminating(pod))
        before = self.seen.get(uid)
        self.seen[uid] = now
        if now.terminating and not (before and before.terminating):
            return "terminating"
        if now.ready and not (before and before.ready):
            return "ready"
        return "added" if before is None else None
