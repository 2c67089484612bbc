"""Between two passes, watch a conference's load for a scale-out worth acting on now.

A pass reads the load once per ``scaling.intervalSeconds``; a join that
pushes the group over its target load would wait up to that long before
anything happens. The load watch reads only the members of the group on the
servers that host it (their ``/metrics``, as the pass does when no Prometheus
is configured), ``poll_seconds`` apart, and starts a pass at once when that
many members ask for more nodes than the last pass decided on.

It never scales in and never acts itself: it only starts the pass earlier,
and the pass (the planner, with its windows and cooldown) decides. With
Prometheus as the load source there is no watch: its samples are only as
fresh as its scrape interval, which the pass already reads.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from sipfleet.operator.loadsource import ScrapeLoadSource
from sipfleet.operator.planning.scaling import recommend_nodes
from sipfleet.operator.planning.values import PlanSpec
from sipfleet.operator.snapshot import SharedFetch

MIN_POLL_SECONDS = 0.25
"""The fastest poll: one GET /metrics per hosting server each quarter second."""


@dataclass(frozen=True)
class WatchTarget:
    """What the last pass left for the watch: where to read and what it decided."""

    spec: PlanSpec
    urls: Mapping[str, str]
    """Server name -> admin base URL, for every server hosting the group."""
    members: int
    """Members the last pass counted."""
    desired_nodes: int
    """Nodes the last pass asked for (Decision.desired_nodes)."""

    @property
    def poll_seconds(self) -> float:
        """A quarter of the pass interval, at least MIN_POLL_SECONDS (s)."""
        return max(MIN_POLL_SECONDS, self.spec.scaling.interval_seconds / 4)

    def asks_for_more(self, members: int) -> bool:
        """Whether ``members`` members need more nodes than the last pass asked for
        (recommend_nodes: the target load, maxMembers and the node budget)."""
        return members > self.members and recommend_nodes(self.spec, members)[0] > (
            self.desired_nodes
        )


class SharedScrapes:
    """One ``/metrics`` read per server and poll, shared by every conference's watch
    (the main server hosts every group of its fleet: with 1,000 conferences, one
    read serves all of them). A read is reused for ``ttl`` seconds (up to twice
    that while the next one is in flight: snapshot.SharedFetch); keyed by the
    server's admin URL, so at most one entry per Pod IP the fleet has used."""

    def __init__(self, source: ScrapeLoadSource, ttl: float = MIN_POLL_SECONDS / 2) -> None:
        self._source = source
        self._reads: SharedFetch[str, dict[str, int] | None] = SharedFetch(ttl)

    async def _read(self, url: str) -> dict[str, int] | None:
        return (await self._source.read_all({url: url})).get(url)

    async def members(self, url: str) -> dict[str, int] | None:
        """group -> members on the server at ``url``; None when it did not answer."""
        return await self._reads.get(url, functools.partial(self._read, url))


async def read_members(scrapes: SharedScrapes, target: WatchTarget) -> int | None:
    """Members of the group on its servers now; None when a server did not answer
    (the pass, which reads every server, handles that)."""
    found = await asyncio.gather(*(scrapes.members(url) for url in target.urls.values()))
    if any(by is None for by in found):
        return None
    return sum(by.get(target.spec.group, 0) for by in found if by is not None)
