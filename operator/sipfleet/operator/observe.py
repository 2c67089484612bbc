"""Assemble the planner's ``Observations`` for one conference.

The pure half (``server_observation``, ``in_flight`` and helpers) turns Pods,
``/v1/state`` answers, transfer listings and a ``LoadReading`` into planner
values; ``observe`` does the I/O: list Pods, ask every server, read the load.

Members: a server's member count comes from the load source when its sample
is fresh -- that is the point of a load source -- else from ``/v1/state``.
For a draining node the higher of the two counts, so a lagging metric can
never make a node with members look empty and deletable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sipfleet.node.admin_client import AdminError
from sipfleet.node.admin_types import NodeState, TransferState
from sipfleet.operator import pods as podlib
from sipfleet.operator import rollout
from sipfleet.operator.kube import Obj
from sipfleet.operator.loadsource import (
    UNMOVED_METRIC,
    LoadReading,
    LoadSource,
    ScrapeLoadSource,
    scraped_reading,
)
from sipfleet.operator.planner import (
    Freshness,
    InFlightTransfer,
    Observations,
    PodPhase,
    Role,
    ServerObservation,
    Shard,
)
from sipfleet.operator.runtime import Runtime

T = TypeVar("T")
_PHASES = frozenset({"Pending", "Running", "Succeeded", "Failed", "Unknown"})


def created_at(pod: Mapping[str, Any]) -> float:
    """The Pod's creationTimestamp as epoch seconds (0 when absent)."""
    stamp = pod.get("metadata", {}).get("creationTimestamp")
    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def pod_phase(pod: Mapping[str, Any]) -> PodPhase:
    phase = (pod.get("status") or {}).get("phase", "Pending")
    return cast(PodPhase, phase if phase in _PHASES else "Unknown")


def shards_by_group(state: NodeState | None) -> dict[str, Shard]:
    """group -> its shard, from a ``/v1/state`` answer."""
    shards = () if state is None else state.shards
    return {sh.group: Shard(uri=sh.uri, members=sh.members, capacity=sh.capacity) for sh in shards}


def server_observation(
    pod: Mapping[str, Any],
    role: Role,
    state: NodeState | None,
    shard: Shard | None,
    load: LoadReading,
    template: str | None = None,
) -> ServerObservation:
    """One server as the planner sees it; ``shard`` is the group's (``shard_of``),
    ``template`` the fleet's current template digest for the server's role
    (rollout.py; None: never outdated).

    See the module docstring for how members are chosen.
    """
    name = pod["metadata"]["name"]
    labels = pod["metadata"].get("labels") or {}
    stopping = podlib.terminating(pod)
    draining = (
        stopping
        or labels.get(podlib.LABEL_DRAINING) == "true"
        or (state is not None and state.draining)
    )
    metrics: Freshness
    if state is None:
        metrics = "missing"
    elif shard is None:
        metrics = "fresh"  # /v1/state says the server holds none of the group
    elif name in load.members:
        metrics = "fresh"
        measured = load.members[name]
        members = max(measured, shard.members) if draining else measured
        shard = Shard(shard.uri, members, shard.capacity)
    else:
        metrics = "stale" if load.error else "missing"
    return ServerObservation(
        name=name,
        role=role,
        # A stopping server that still answers stays ready: it is routed as a
        # draining leaf, so group messages reach its members until they moved.
        ready=podlib.pod_ready(pod, stopping_too=True) and state is not None,
        phase=pod_phase(pod),
        draining=draining,
        shard=shard,
        metrics=metrics,
        created_at=created_at(pod),
        terminating=stopping,
        outdated=template is not None and rollout.outdated(pod, template),
    )


def in_flight(
    listings: Mapping[str, Iterable[TransferState]],
    group: str,
    server_of_uri: Mapping[str, str],
) -> tuple[InFlightTransfer, ...]:
    """Running transfers of ``group``, from each source server's GET /v1/transfers."""
    out = []
    for source, transfers in sorted(listings.items()):
        for t in transfers:
            if t.group != group or t.state != "running":
                continue
            remaining = max(0, t.requested - t.moved - t.failed)
            target = server_of_uri.get(t.target, t.target)
            out.append(InFlightTransfer(source=source, target=target, remaining=remaining))
    return tuple(out)


@dataclass(frozen=True)
class FleetView:
    """A fleet's servers at one instant, fetched once and shared by its conferences.

    Indexed by group, so one conference's pass costs O(its servers), not
    O(every group of the fleet): the main server hosts all of them.
    """

    taken: float
    """time.monotonic() when the fetch began: everything in it is at least this fresh."""
    main_pod: Obj | None
    node_pods: tuple[Obj, ...]
    urls: Mapping[str, str]
    states: Mapping[str, NodeState]
    """/v1/state of every server that answered."""
    shards: Mapping[str, Mapping[str, Shard]]
    """server -> group -> its shard there."""
    transfers: Mapping[str, Mapping[str, tuple[TransferState, ...]]]
    """group -> source server -> that server's transfers of the group."""
    scraped: Mapping[str, Mapping[str, int]] | None
    """server -> group -> members from its /metrics (None: Prometheus is the source)."""
    unmoved: Mapping[str, Mapping[str, int]]
    """Terminating server -> group -> members its graceful exit could not move."""

    def members_per_server(self) -> dict[str, int]:
        return {s: sum(sh.members for sh in by.values()) for s, by in self.shards.items()}


def _name(pod: Obj) -> str:
    return str(pod["metadata"]["name"])


async def view_fleet(
    rt: Runtime, namespace: str, fleet: str, token: str, *, scrape: bool
) -> FleetView:
    """List the fleet's Pods and ask every server its state and transfers (and /metrics)."""
    taken = time.monotonic()
    all_pods = await rt.kube.list_pods(namespace, podlib.fleet_selector(fleet))
    main_pod = next(
        (p for p in all_pods if p["metadata"]["name"] == podlib.main_pod_name(fleet)), None
    )
    nodes = tuple(p for p in all_pods if podlib.node_index(p["metadata"]["name"]) is not None)
    servers = ([main_pod] if main_pod else []) + list(nodes)
    urls = {p["metadata"]["name"]: u for p in servers if (u := podlib.admin_url(p))}
    names = list(urls)
    clients = [rt.admin(urls[n], token) for n in names]
    states_l, transfers_l = await asyncio.gather(
        asyncio.gather(*(_maybe(c.state()) for c in clients)),
        asyncio.gather(*(_maybe(c.transfers()) for c in clients)),
    )
    states = {n: s for n, s in zip(names, states_l, strict=True) if isinstance(s, NodeState)}
    shards = {n: shards_by_group(st) for n, st in states.items()}
    transfers: dict[str, dict[str, list[TransferState]]] = {}
    for n, listing in zip(names, transfers_l, strict=True):
        for t in listing if isinstance(listing, list) else ():
            transfers.setdefault(t.group, {}).setdefault(n, []).append(t)
    scraper = ScrapeLoadSource(rt.session)
    scraped = None
    if scrape:
        hosting = {n: urls[n] for n, by in shards.items() if by}
        scraped = await scraper.read_all(hosting)
    stopping = {n: urls[n] for p in servers if podlib.terminating(p) and (n := _name(p)) in urls}
    unmoved = await scraper.read_all(stopping, UNMOVED_METRIC)
    return FleetView(
        taken=taken,
        main_pod=main_pod,
        node_pods=nodes,
        urls=urls,
        states=states,
        shards=shards,
        transfers={g: {n: tuple(ts) for n, ts in by.items()} for g, by in transfers.items()},
        scraped=scraped,
        unmoved=unmoved,
    )


@dataclass(frozen=True)
class Observed:
    """One conference's world at one instant, plus what the executor needs to act."""

    observations: Observations
    node_pods: tuple[Obj, ...]
    other_nodes: int
    urls: Mapping[str, str]
    states: Mapping[str, NodeState]
    taken: float
    """When the underlying FleetView was fetched (time.monotonic())."""
    unmoved: Mapping[str, int] = field(default_factory=dict)
    """Terminating server -> members of the group its graceful exit could not move."""
    main_pod: Obj | None = None
    """The fleet's main server Pod, if it exists."""
    others_settled: bool = True
    """Every node Pod of the fleet's other conferences is Ready, updated and not
    stopping or draining (the main server, which hosts every group, may roll)."""


async def _maybe(aw: Awaitable[T]) -> T | None:
    """The answer, or None when the server cannot be asked (it is then 'missing')."""
    try:
        return await aw
    except AdminError:
        return None


async def observe(
    view: FleetView,
    conference: str,
    group: str,
    load_source: LoadSource | None,
    template: str | None = None,
    main_template: str | None = None,
) -> Observed:
    """One conference's servers (main + its nodes) from the fleet view, plus the load.

    ``load_source`` None reads the view's scraped /metrics; ``template`` and
    ``main_template`` are the fleet's current node and main server template
    digests (None: no rolling update of that role).
    """
    main_pod = view.main_pod
    mine = tuple(p for p in view.node_pods if podlib.conference_of(p) == conference)
    servers = ([main_pod] if main_pod else []) + list(mine)
    urls = {n: view.urls[n] for p in servers if (n := p["metadata"]["name"]) in view.urls}
    states = {n: view.states[n] for n in urls if n in view.states}
    group_shards = {n: sh for n in states if (sh := view.shards[n].get(group)) is not None}
    hosting = {n: urls[n] for n in group_shards}
    if load_source is None:
        load = scraped_reading(view.scraped or {}, group, hosting)
    else:
        load = await load_source.read(group, hosting)
    observations = [
        server_observation(
            p,
            "main" if p is main_pod else "node",
            states.get(p["metadata"]["name"]),
            group_shards.get(p["metadata"]["name"]),
            load,
            main_template if p is main_pod else template,
        )
        for p in servers
    ]
    others = [p for p in view.node_pods if podlib.conference_of(p) != conference]
    server_of_uri = {sh.uri: n for n, sh in group_shards.items()}
    listings = {n: ts for n, ts in view.transfers.get(group, {}).items() if n in urls}
    return Observed(
        observations=Observations(
            servers=tuple(observations), transfers=in_flight(listings, group, server_of_uri)
        ),
        node_pods=mine,
        other_nodes=len(view.node_pods) - len(mine),
        urls=urls,
        states=states,
        taken=view.taken,
        unmoved={n: c for n, by in view.unmoved.items() if n in urls and (c := by.get(group, 0))},
        main_pod=main_pod,
        others_settled=all(_settled(p, template) for p in others),
    )


def _settled(pod: Mapping[str, Any], template: str | None) -> bool:
    """A node Pod Ready, not stopping or draining, and (given ``template``) updated."""
    labels = pod["metadata"].get("labels") or {}
    return (
        podlib.pod_ready(pod)
        and labels.get(podlib.LABEL_DRAINING) != "true"
        and not (template is not None and rollout.outdated(pod, template))
    )
