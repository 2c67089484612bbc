"""Builders for planner tests and a model of the executor applying a Decision.

``apply`` is what the real executor does, seen from the planner's inputs:
created nodes show up as Pending Pods, placed shards exist (empty), drained
nodes are marked draining, deleted Pods are gone and transfers are in flight.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sipfleet.operator.models import ScalingPolicy, TransferPolicy
from sipfleet.operator.planner import (
    Decision,
    Freshness,
    InFlightTransfer,
    Observations,
    PlanSpec,
    ServerObservation,
    Shard,
)

GROUP = "sip:conf3@example.com"


def make_spec(
    capacity: int = 20,
    *,
    mode: str = "refer",
    rate: int = 50,
    max_members: int | None = None,
    min_nodes: int = 0,
    max_nodes: int = 10,
    other_nodes: int = 0,
    max_unavailable: int = 1,
    others_settled: bool = True,
    **scaling: Any,
) -> PlanSpec:
    """A PlanSpec; keyword arguments not listed go to ScalingPolicy (snake_case)."""
    policy = {"scale_down_stabilization_seconds": 0, "cooldown_seconds": 0, **scaling}
    return PlanSpec(
        group=GROUP,
        members_per_server=capacity,
        scaling=ScalingPolicy(**policy),
        transfer=TransferPolicy(mode=mode, members_per_second=rate),  # type: ignore[arg-type]
        max_members=max_members,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        other_nodes=other_nodes,
        max_unavailable=max_unavailable,
        others_settled=others_settled,
    )


def shard(server: str, members: int, capacity: int = 20) -> Shard:
    return Shard(uri=f"sip:conf3-{server}@{server}.local", members=members, capacity=capacity)


def main(
    members: int | None = 0,
    *,
    capacity: int = 20,
    ready: bool = True,
    metrics: Freshness = "fresh",
    outdated: bool = False,
    terminating: bool = False,
) -> ServerObservation:
    """The main server; ``members=None`` means no shard yet."""
    return ServerObservation(
        name="main",
        role="main",
        ready=ready,
        draining=terminating,
        shard=None if members is None else shard("main", members, capacity),
        metrics=metrics,
        terminating=terminating,
        outdated=outdated,
    )


def node(
    name: str,
    members: int | None = 0,
    *,
    capacity: int = 20,
    ready: bool = True,
    draining: bool = False,
    metrics: Freshness = "fresh",
    phase: str = "Running",
    created_at: float = 0.0,
    terminating: bool = False,
    outdated: bool = False,
) -> ServerObservation:
    """A node Pod; ``members=None`` means no shard; a terminating one is draining."""
    return ServerObservation(
        name=name,
        role="node",
        ready=ready,
        phase=phase,  # type: ignore[arg-type]
        draining=draining or terminating,
        shard=None if members is None else shard(name, members, capacity),
        metrics=metrics,
        created_at=created_at,
        terminating=terminating,
        outdated=outdated,
    )


def observe(
    *servers: ServerObservation, transfers: tuple[InFlightTransfer, ...] = ()
) -> Observations:
    return Observations(servers=servers, transfers=transfers)


def apply(observations: Observations, decision: Decision, now: float) -> Observations:
    """The observations right after the executor carried out ``decision``."""
    servers = {s.name: s for s in observations.servers}
    for action in decision.delete:
        del servers[action.server]
    for action in decision.drain:
        servers[action.server] = replace(servers[action.server], draining=True)
    for action in decision.roll:  # deleted: Kubernetes stops it gracefully
        servers[action.server] = replace(servers[action.server], draining=True, terminating=True)
    if decision.roll_main:
        name = decision.roll_main.server
        servers[name] = replace(servers[name], draining=True, terminating=True)
    for placement in decision.create_shards:
        servers[placement.server] = replace(
            servers[placement.server],
            shard=shard(placement.server, 0, placement.capacity),
        )
    for i in range(decision.create_nodes):
        name = f"new-{now:g}-{i}"  # unique: as the executor's free indices
        servers[name] = ServerObservation(
            name=name, role="node", ready=False, phase="Pending", metrics="missing", created_at=now
        )
    moving = tuple(InFlightTransfer(t.source, t.target, t.count) for t in decision.transfers)
    return Observations(tuple(servers.values()), observations.transfers + moving)
