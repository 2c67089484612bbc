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

from collections.abc import Mapping
from dataclasses import dataclass

from sipfleet.operator.loadsource import ScrapeLoadSource
from sipfleet.operator.planning.scaling import recommend_nodes
from sipfleet.operator.planning.values import PlanSpec

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


async def read_members(source: ScrapeLoadSource, target: WatchTarget) -> int | None:
    """Members of the group on its servers now; None when a server did not answer
    (the pass, which reads every server, handles that)."""
    scraped = await source.read_all(target.urls)
    if scraped.keys() != target.urls.keys():
        return None
    return sum(by.get(target.spec.group, 0) for by in scraped.values())
