"""Graceful exit (SIGTERM): move every member to the group's other servers, then go.

The pure half, ``assign``, splits a shard's unassigned members over the
routing table the operator pushed (``active`` entries of other servers, by
free room). The asyncio half, ``evacuate``, drives it: the server stops
taking joins (``Node.drain``: joins get 302 to another server of the group,
or a "full" answer with Retry-After when there is no room anywhere), then
every ``POLL_SECONDS`` it starts transfers (RFC 3515 REFER, through the
node's own transfer machinery) for members not yet being moved, within the
fleet's transfer rate, and keeps forwarding group messages meanwhile (the
event loop runs on). It ends when no member is left or at the deadline;
members still here then are counted in ``sipfleet_node_unmoved_members_total``
and returned, never dropped silently.

Pace: the rates of the jobs it runs add up to at most ``rate``; each job
REFERs its first member at once, so a step may start up to one member per
target before the pace applies.

Targets appear while it runs: the operator sees the terminating Pod, starts
a replacement and pushes routes with it, and the next poll uses them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sipfleet.node.admin_types import Conflict, RouteEntry, TransferRequest, TransferState
from sipfleet.node.node import Node

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""How often the evacuation looks again at members, transfers and routes."""
MIN_RATE = 0.01
"""Members/s: below this much unused rate no new transfer job starts."""


def assign(
    unassigned: int,
    entries: Sequence[RouteEntry],
    self_name: str,
    taken: Mapping[str, int],
) -> list[tuple[str, int]]:
    """Split ``unassigned`` members over the other active servers of a group.

    ``entries`` is the group's routing table as pushed (entry free counts
    are the operator's); ``taken`` counts members this evacuation already
    sent to each shard URI since that table arrived. Fullest room first;
    returns ``(target shard URI, members)`` pairs, never more than a target's
    room, so the sum may fall short of ``unassigned`` (the rest waits for
    room). Draining entries and this server are never targets.
    """
    rooms = sorted(
        (
            (entry.free - taken.get(entry.uri, 0), entry.uri)
            for entry in entries
            if entry.state == "active" and entry.server != self_name
        ),
        key=lambda room: (-room[0], room[1]),
    )
    out: list[tuple[str, int]] = []
    left = unassigned
    for room, uri in rooms:
        if left <= 0:
            break
        count = min(left, room)
        if count > 0:
            out.append((uri, count))
            left -= count
    return out


@dataclass
class Evacuation:
    """One server's graceful exit; ``run`` returns the members it could not move."""

    node: Node
    rate: float
    """Members/s, all transfers of this server together (the fleet's transfer rate)."""
    clock: Callable[[], float] = time.monotonic
    _generation: int = -1
    _taken: dict[str, int] = field(default_factory=dict)
    """Shard URI -> members sent there since routes generation ``_generation``."""
    _mine: set[str] = field(default_factory=set)
    """Ids of the transfer jobs this evacuation started."""

    def members(self) -> int:
        """Members still on this server, all groups."""
        return sum(len(shard.members) for shard in self.node.shards.values())

    async def run(self, deadline: float) -> int:
        """Drain, move members until none is left or ``clock() >= deadline``.

        Returns the members still here at the end (0: everyone moved) and
        counts them, per group, in ``sipfleet_node_unmoved_members_total``.
        """
        self.node.drain()
        while self.members() and self.clock() < deadline:
            self.step()
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - self.clock())))
        left = 0
        for group, shard in self.node.shards.items():
            if shard.members:
                self.node.metrics.unmoved.labels(group).inc(len(shard.members))
                left += len(shard.members)
        return left

    def step(self) -> None:
        """Start transfers for members not yet being moved, within the rate left."""
        jobs = [j for j in self.node.transfers() if j.state == "running"]
        if self.node.routes.generation != self._generation:
            # A new table carries the operator's fresh free counts: only the
            # members still on their way count against them.
            self._generation = self.node.routes.generation
            self._taken = {}
            for job in jobs:
                self._taken[job.target] = self._taken.get(job.target, 0) + job.pending
        spare = self.rate - sum(j.rate for j in jobs if j.id in self._mine)
        moving: dict[str, int] = {}
        for job in jobs:
            moving[job.group] = moving.get(job.group, 0) + job.pending
        for group, shard in sorted(self.node.shards.items()):
            unassigned = len(shard.members) - moving.get(group, 0)
            if unassigned <= 0 or spare < MIN_RATE:
                continue
            plan = assign(unassigned, self.node.routes.entries(group), self.node.name, self._taken)
            share = spare / max(1, len(plan))  # the jobs together stay within the rate
            for target, count in plan:
                rate = share
                started = self._start(TransferRequest(group, target, "refer", rate, count))
                if started is not None:
                    spare -= rate
                    self._taken[target] = self._taken.get(target, 0) + started.requested

    def _start(self, request: TransferRequest) -> TransferState | None:
        try:
            job = self.node.start_transfer(request)
        except (Conflict, LookupError, ValueError) as exc:
            log.info("evacuation: no transfer of %s to %s: %s", request.group, request.target, exc)
            return None
        self._mine.add(job.id)
        log.info(
            "evacuation: moving %d members of %s to %s at %.3g/s",
            job.requested,
            request.group,
            request.target,
            request.rate,
        )
        return job
