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
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sipfleet.node.admin_client import AdminError
from sipfleet.operator import pods as podlib
from sipfleet.operator.kube import Obj
from sipfleet.operator.loadsource import LoadReading, LoadSource
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


def shard_of(state: Mapping[str, Any] | None, group: str) -> Shard | None:
    """The group's shard in a ``/v1/state`` answer."""
    for shard in (state or {}).get("shards", []):
        if shard.get("group") == group:
            return Shard(
                uri=str(shard["uri"]),
                members=int(shard.get("members", 0)),
                capacity=int(shard.get("capacity", 0)),
            )
    return None


def server_observation(
    pod: Mapping[str, Any],
    role: Role,
    state: Mapping[str, Any] | None,
    group: str,
    load: LoadReading,
) -> ServerObservation:
    """One server as the planner sees it; see the module docstring for members."""
    name = pod["metadata"]["name"]
    labels = pod["metadata"].get("labels") or {}
    draining = labels.get(podlib.LABEL_DRAINING) == "true" or bool((state or {}).get("draining"))
    shard = shard_of(state, group)
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
        ready=podlib.pod_ready(pod) and state is not None,
        phase=pod_phase(pod),
        draining=draining,
        shard=shard,
        metrics=metrics,
        created_at=created_at(pod),
    )


def in_flight(
    listings: Mapping[str, Iterable[Mapping[str, Any]]],
    group: str,
    server_of_uri: Mapping[str, str],
) -> tuple[InFlightTransfer, ...]:
    """Running transfers of ``group``, from each source server's GET /v1/transfers."""
    out = []
    for source, transfers in sorted(listings.items()):
        for t in transfers:
            if t.get("group") != group or t.get("state") != "running":
                continue
            done = int(t.get("moved", 0)) + int(t.get("failed", 0))
            remaining = max(0, int(t.get("requested", 0)) - done)
            target = server_of_uri.get(str(t.get("target")), str(t.get("target")))
            out.append(InFlightTransfer(source=source, target=target, remaining=remaining))
    return tuple(out)


@dataclass(frozen=True)
class Observed:
    """One conference's world at one instant, plus what the executor needs to act."""

    observations: Observations
    node_pods: tuple[Obj, ...]
    other_nodes: int
    urls: Mapping[str, str]
    states: Mapping[str, Mapping[str, Any]]


async def _maybe(aw: Awaitable[T]) -> T | None:
    """The answer, or None when the server cannot be asked (it is then 'missing')."""
    try:
        return await aw
    except AdminError:
        return None


async def observe(
    rt: Runtime,
    namespace: str,
    fleet: str,
    conference: str,
    group: str,
    token: str,
    load_source: LoadSource,
) -> Observed:
    """List the fleet's Pods, ask each server its state and transfers, read the load."""
    all_pods = await rt.kube.list_pods(namespace, podlib.fleet_selector(fleet))
    main_pod = next(
        (p for p in all_pods if p["metadata"]["name"] == podlib.main_pod_name(fleet)), None
    )
    fleet_nodes = [p for p in all_pods if podlib.node_index(p["metadata"]["name"]) is not None]
    mine = tuple(p for p in fleet_nodes if podlib.conference_of(p) == conference)
    servers = ([main_pod] if main_pod else []) + list(mine)
    urls = {p["metadata"]["name"]: u for p in servers if (u := podlib.admin_url(p))}
    names = list(urls)
    clients = [rt.admin(urls[n], token) for n in names]
    states_l, transfers_l = await asyncio.gather(
        asyncio.gather(*(_maybe(c.state()) for c in clients)),
        asyncio.gather(*(_maybe(c.transfers()) for c in clients)),
    )
    states = {n: s for n, s in zip(names, states_l, strict=True) if isinstance(s, dict)}
    hosting = {n: urls[n] for n in states if shard_of(states[n], group) is not None}
    load = await load_source.read(group, hosting)
    observations = [
        server_observation(
            p, "main" if p is main_pod else "node", states.get(p["metadata"]["name"]), group, load
        )
        for p in servers
    ]
    server_of_uri = {
        sh.uri: n for n, st in states.items() if (sh := shard_of(st, group)) is not None
    }
    listings = {n: t for n, t in zip(names, transfers_l, strict=True) if isinstance(t, list)}
    return Observed(
        observations=Observations(
            servers=tuple(observations), transfers=in_flight(listings, group, server_of_uri)
        ),
        node_pods=mine,
        other_nodes=len(fleet_nodes) - len(mine),
        urls=urls,
        states=states,
    )
