"""Members a stopping server could not move, read while it stops.

A server that runs out of its grace period shows how many members it could not
move on /metrics (``sipfleet_node_unmoved_members``) for a few seconds (sip-node
``runner.REPORT_SECONDS``), ends their sessions with BYE and exits. A control
pass need not come in that window: it waits for its conference's lock and may
reuse a fleet snapshot taken before the Pod began to stop. So on a server Pod's
"terminating" event the operator polls that one server's /metrics
(``watch``) until its grace period is over, keeps what it read
(``UnmovedSeen``), and starts a pass that posts the Event
(control.unmoved_events) from it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
from sipfleet.operator.loadsource import UNMOVED_METRIC, ScrapeLoadSource

POLL_SECONDS = 0.25
"""Seconds between two reads of a stopping server's /metrics."""
AFTER_GRACE_SECONDS = 5.0
"""Seconds a stopping server is still read after its grace period (a late SIGKILL)."""
KEEP_SECONDS = 120.0
"""Seconds a count read is kept for the passes that post it."""


@dataclass(frozen=True)
class Seen:
    """What one stopping server reported."""

    conference: str | None
    """The conference it served; None for the main server (it serves every one)."""
    counts: Mapping[str, int]
    """Group URI -> members not moved."""
    at: float
    """When it was last read (time.monotonic() seconds)."""


@dataclass
class UnmovedSeen:
    """Counts read from stopping servers, by (namespace, server Pod name)."""

    seen: dict[tuple[str, str], Seen] = field(default_factory=dict)

    def record(
        self,
        namespace: str,
        server: str,
        conference: str | None,
        counts: Mapping[str, int],
        now: float,
    ) -> bool:
        """Keep the larger of each group's count; True if any count grew."""
        before = self.seen.get((namespace, server))
        old = dict(before.counts) if before else {}
        merged = {g: max(c, old.get(g, 0)) for g, c in counts.items()} | {
            g: c for g, c in old.items() if g not in counts
        }
        self.seen[(namespace, server)] = Seen(conference, merged, now)
        return merged != old

    def counts(self, namespace: str, conference: str, group: str, now: float) -> dict[str, int]:
        """Server -> members of `group` it could not move, for servers of `conference`
        (or the main server) read in the last KEEP_SECONDS; older reads are dropped."""
        for key in [k for k, s in self.seen.items() if now - s.at > KEEP_SECONDS]:
            del self.seen[key]
        return {
            server: count
            for (ns, server), s in self.seen.items()
            if ns == namespace
            and s.conference in (None, conference)
            and (count := s.counts.get(group, 0))
        }


def merged(*readings: Mapping[str, int]) -> dict[str, int]:
    """Server -> the largest count any reading gives it."""
    out: dict[str, int] = {}
    for reading in readings:
        for server, count in reading.items():
            out[server] = max(count, out.get(server, 0))
    return out


async def watch(
    session: aiohttp.ClientSession,
    url: str,
    grace: float,
    found: Callable[[dict[str, int]], Awaitable[None]],
) -> None:
    """Read ``url``'s /metrics every POLL_SECONDS for `grace` + AFTER_GRACE_SECONDS
    seconds and hand each non-zero group -> count reading to `found`."""
    scraper = ScrapeLoadSource(session)
    deadline = time.monotonic() + grace + AFTER_GRACE_SECONDS
    while time.monotonic() < deadline:
        read = await scraper.read_all({"server": url}, UNMOVED_METRIC)
        counts = {g: c for g, c in read.get("server", {}).items() if c}
        if counts:
            await found(counts)
        await asyncio.sleep(POLL_SECONDS)
