"""What the demo saw, over time: members per server, scale events, and the summary.

Pure data: the observer records into a `Timeline`; the live view, the summary
table and the PNG plot read from it. Times are seconds since the story began.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SCALE_OUT = "ScaleOut"
SCALE_IN = "ScaleIn"
NODE_DELETED = "NodeDeleted"
TRANSFER = "Transfer"
SCALE_KINDS = (SCALE_OUT, SCALE_IN, NODE_DELETED)
_NODE = re.compile(r"\b[a-z0-9]([-a-z0-9]*[a-z0-9])?-(node-\d+)\b")
_VERB = {SCALE_OUT: "+", SCALE_IN: "drain ", NODE_DELETED: "-", TRANSFER: "REFER from "}


@dataclass(frozen=True)
class Sample:
    """Members of the group on each server that answered at time `t`."""

    t: float
    members: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.members.values())


@dataclass(frozen=True)
class Mark:
    """An operator Event (ScaleOut, ScaleIn, NodeDeleted, Transfer, ...) seen at `t`."""

    t: float
    kind: str
    message: str


def mark_label(mark: Mark) -> str:
    """A short label for a plot: ``+node-1``, ``drain node-4``, ``-node-4``; nodes are
    found in the Event message by their Pod names (``<fleet>-node-<n>``)."""
    nodes = [m.group(2) for m in _NODE.finditer(mark.message)]
    if mark.kind == TRANSFER:
        nodes = nodes[:1]  # the source; the message also names the target
    verb = _VERB.get(mark.kind)
    if verb is None or not nodes:
        return mark.kind
    return ", ".join(f"{verb}{node}" for node in dict.fromkeys(nodes))


@dataclass(frozen=True)
class Summary:
    duration: float
    peak_members: int
    peak_servers: int
    servers_seen: tuple[str, ...]
    final_servers: int
    scale_outs: int
    scale_ins: int
    nodes_deleted: int
    transfer_events: int

    @property
    def scaled_out(self) -> bool:
        return self.peak_servers >= 2

    @property
    def scaled_back_in(self) -> bool:
        """Back to fewer servers than at the peak, with nodes deleted on the way."""
        return self.scaled_out and self.final_servers < self.peak_servers and self.nodes_deleted > 0


@dataclass
class Timeline:
    samples: list[Sample] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    acts: list[tuple[float, str]] = field(default_factory=list)
    """(start time, name) of each act of the story, in order."""

    def begin(self, t: float, act: str) -> None:
        self.acts.append((t, act))

    def act_spans(self) -> list[tuple[float, float, str]]:
        """(start, end, name) of each act; the last one ends at the last sample."""
        if not self.acts:
            return []
        end = self.samples[-1].t if self.samples else 0.0
        starts = [t for t, _ in self.acts[1:]] + [end]
        return [(t, max(t, e), name) for (t, name), e in zip(self.acts, starts, strict=True)]

    def record(self, t: float, members: dict[str, int]) -> None:
        self.samples.append(Sample(t, dict(members)))

    def mark(self, t: float, kind: str, message: str) -> None:
        self.marks.append(Mark(t, kind, message))

    def servers(self) -> list[str]:
        """Every server that ever hosted the group, in order of first appearance."""
        seen: dict[str, None] = {}
        for sample in self.samples:
            for name in sample.members:
                seen.setdefault(name, None)
        return list(seen)

    def times(self) -> list[float]:
        return [s.t for s in self.samples]

    def series(self, server: str) -> list[int]:
        """Members on one server at each sample (0 where it did not host the group)."""
        return [s.members.get(server, 0) for s in self.samples]

    def count(self, kind: str) -> int:
        return sum(1 for m in self.marks if m.kind == kind)

    def summary(self) -> Summary:
        last = self.samples[-1] if self.samples else None
        return Summary(
            duration=last.t if last else 0.0,
            peak_members=max((s.total for s in self.samples), default=0),
            peak_servers=max((len(s.members) for s in self.samples), default=0),
            servers_seen=tuple(self.servers()),
            final_servers=len(last.members) if last else 0,
            scale_outs=self.count(SCALE_OUT),
            scale_ins=self.count(SCALE_IN),
            nodes_deleted=self.count(NODE_DELETED),
            transfer_events=self.count(TRANSFER),
        )
