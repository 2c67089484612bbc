"""The pure planner: ``plan(spec, observations, history, now) -> Decision``.

Policy math only, in the style of Agones ``pkg/fleetautoscalers``: a function
from observed state to a desired size plus "limited" flags, and the concrete
steps that move the group towards it. No I/O and no clock: ``now`` is an
argument, and the scaling memory (stabilization windows, cooldown) is an
immutable ``History`` value that the caller stores and passes back
(``decision.history``).

Ownership model: every node Pod belongs to one conference (the executor
labels it), so the planner of a conference sees the fleet's main server plus
its own nodes. ``PlanSpec.other_nodes`` counts node Pods the fleet runs for
other conferences, so the fleet-wide ``maxNodes`` holds.

Safety rules the property tests pin down:
- a server with members is never deleted; nodes are drained first and deleted
  once empty;
- stale or missing metrics on a running server block every scale-in;
- node Pods never exceed ``maxNodes``;
- transfers only target ready, non-draining servers that host the group;
- a terminating node (Kubernetes is stopping it) is not capacity: it is
  replaced at once (no cooldown or stabilization window: the load did not
  change), moves its own members (no transfer starts from it), stays in the
  routes as a draining leaf while it answers, and does not count against
  ``maxNodes`` (it is on its way out, as a Deployment's surge);
- a rolling update stops at most ``max_unavailable`` outdated nodes at a
  time (terminating ones count), only while no node is starting, draining
  or stuck and the metrics are fresh, and creates their replacements in the
  same decision; the stopped node leaves through the graceful exit;
- the main server is rolled last and alone: only once every node of the
  fleet runs the new template and is Ready, nothing else is in flight
  (no node starting, draining, stopping or stuck, no transfer, no other
  action this pass) and the active nodes have room for its members; while
  it waits for that room, or stops, the desired node count covers every
  member without it;
- planning again after the executor applied a decision repeats nothing: it
  only finishes that decision's work (deleting the nodes it drained once they
  are empty, moving members onto the shards it created); a step still in
  progress (nodes starting or draining) counts against ``maxNodesPerStep``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from sipfleet.operator.planning.placement import (
    deletions,
    flows,
    moves,
    placements,
    route_table,
    stoppable,
)
from sipfleet.operator.planning.scaling import (
    members_at_load,
    recommend_nodes,
    remember,
    scale_step,
)
from sipfleet.operator.planning.values import (
    Decision,
    DecisionKind,
    Freshness,
    History,
    InFlightTransfer,
    Limit,
    NodeAction,
    Observations,
    PlanSpec,
    PodPhase,
    Recommendation,
    Role,
    Route,
    ServerObservation,
    Shard,
    ShardPlacement,
    Transfer,
    TransferMethod,
)

__all__ = [
    "STARTUP_GRACE_SECONDS",
    "Decision",
    "DecisionKind",
    "Freshness",
    "History",
    "InFlightTransfer",
    "Limit",
    "NodeAction",
    "Observations",
    "PlanSpec",
    "PodPhase",
    "Recommendation",
    "Role",
    "Route",
    "ServerObservation",
    "Shard",
    "ShardPlacement",
    "Transfer",
    "TransferMethod",
    "members_at_load",
    "plan",
    "recommend_nodes",
]

STARTUP_GRACE_SECONDS = 120.0
"""A node not ready after this long stops blocking the next scale-out step."""


def _problems(
    main: ServerObservation | None,
    nodes: tuple[ServerObservation, ...],
    stale: list[str],
    stuck: list[ServerObservation],
    now: float,
) -> tuple[str, ...]:
    """What makes the conference Degraded."""
    found = []
    if main is None:
        found.append("main server not found")
    elif not main.ready:
        found.append(f"main server {main.name} not ready")
    found += [f"{n.name} pod {n.phase}" for n in nodes if not n.alive]
    found += [f"{n.name} not ready after {now - n.created_at:.0f}s" for n in stuck]
    if stale:
        found.append(f"metrics stale or missing for {', '.join(stale)}")
    return tuple(found)


def rollout(
    spec: PlanSpec,
    active: list[ServerObservation],
    leaving: list[ServerObservation],
    busy: bool,
    inc: Counter[str],
) -> tuple[NodeAction, ...]:
    """Outdated nodes of this conference to stop now for a rolling update
    (emptiest first, none with members on their way in; ``max_unavailable``
    holds per conference).

    Nothing while the conference is ``busy`` (a node starting, draining or
    stuck, metrics stale, the main server not ready): one step at a time,
    each finished before the next. Terminating nodes use up ``max_unavailable``.
    """
    outdated = [n for n in active if n.outdated and n.ready]
    room = spec.max_unavailable - len(leaving)
    if busy or room <= 0 or not outdated:
        return ()
    return tuple(
        NodeAction(n.name, f"roll {n.name} ({n.members} members) to the new node template")
        for n in stoppable(outdated, inc)[:room]
    )


def main_leaving(
    spec: PlanSpec, main: ServerObservation | None, nodes: tuple[ServerObservation, ...]
) -> bool:
    """Whether the main server is stopping (Kubernetes deletes it) or due for a
    rolling update (``spec.roll_main_server``): outdated, Ready, no live node
    of this conference outdated (``spec.others_settled`` covers the others).

    Its members then need room on the nodes: see ``roll_main``.
    """
    if main is None or not main.alive:
        return False
    if main.terminating:
        return True
    return (
        spec.roll_main_server
        and main.outdated
        and main.ready
        and not main.draining
        and spec.others_settled
        and not any(n.outdated for n in nodes if n.alive)
    )


def nodes_without_main(spec: PlanSpec, members: int) -> int:
    """Nodes that keep all ``members`` at the target load with no main server."""
    per_server = members_at_load(spec.members_per_server, spec.scaling.target_load)
    return min(spec.node_budget, max(1, math.ceil(members / per_server)))


def roll_main(
    main: ServerObservation | None,
    routes: tuple[Route, ...],
    busy: str,
) -> tuple[NodeAction | None, str]:
    """Stop the outdated main server now (graceful exit: it moves its members
    to the nodes by REFER, RFC 3515; the fleet timer creates its replacement
    under the same name once the Pod is gone), or say why it waits.

    ``busy`` names what is in flight (empty: nothing). The active nodes in
    ``routes`` must have room (``free``) for every member of the group on
    the main server, so none is left behind to be ended with BYE.
    """
    if main is None:
        return None, ""
    if busy:
        return None, f"main server {main.name} waits for {busy} before its rolling update"
    room = sum(r.free for r in routes if r.state == "active" and r.server != main.name)
    if room < main.members:
        return None, (
            f"main server {main.name} waits for room for its {main.members} members "
            f"on the nodes ({room} free) before its rolling update"
        )
    action = NodeAction(
        main.name,
        f"roll main server {main.name} ({main.members} members) to the new template: "
        "every node is updated",
    )
    return action, ""


def _create_reason(
    spec: PlanSpec,
    create: int,
    replacing: int,
    leaving: list[ServerObservation],
    members: int,
    desired: int,
) -> str:
    """Why nodes are created: replacements for terminating nodes, then scale-out."""
    if not create:
        return ""
    replaced = min(create, replacing)
    parts = []
    if replaced:
        names = ", ".join(s.name for s in leaving)
        parts.append(f"replace {replaced} terminating ({names})")
    if create > replaced:
        parts.append(f"scale out by {create - replaced}")
    return (
        f"{' and '.join(parts)}: {members} members need {desired} nodes "
        f"at target load {spec.scaling.target_load:g}"
    )


def plan(spec: PlanSpec, observations: Observations, history: History, now: float) -> Decision:
    """Decide the next step for one conference. Pure: same inputs, same Decision."""
    main = observations.main
    nodes = tuple(sorted(observations.nodes, key=lambda n: n.name))
    servers = ([main] if main else []) + list(nodes)
    out, inc = flows(observations)
    members = sum(s.members for s in servers)
    stale = [s.name for s in servers if s.phase == "Running" and s.metrics != "fresh"]

    desired, limits = recommend_nodes(spec, members)
    main_going = main_leaving(spec, main, nodes)
    if main_going and main is not None and main.members:  # room on nodes for its members
        desired = max(desired, nodes_without_main(spec, members))
    history = remember(spec, history, now, desired)
    active = [n for n in nodes if n.alive and not n.draining]
    starting = [n for n in active if not n.ready and now - n.created_at < STARTUP_GRACE_SECONDS]
    stuck = [n for n in active if not n.ready and n not in starting]
    leaving = [n for n in nodes if n.terminating and n.alive]
    delete = deletions(nodes, out, inc)
    gone = {a.server for a in delete}
    draining = [n for n in nodes if n.draining and n.alive and not n.terminating]
    draining = [n for n in draining if n.name not in gone]
    unsettled = starting or stuck or draining or stale or not (main and main.ready)
    roll = rollout(spec, active, leaving, bool(unsettled), inc)
    rolled = {a.server for a in roll}
    staying = [n for n in active if n.name not in rolled]
    # Nodes still starting may be the replacements an earlier pass created:
    # they count first, so re-planning never replaces one node twice.
    stopping = len(leaving) + len(roll)
    replace_count = max(0, min(stopping, desired - len(staying)) - len(starting))
    step = scale_step(
        spec,
        history,
        now,
        len(staying) + replace_count,
        desired,
        (len(starting), len(draining)),
        stale,
    )
    limited = set(limits | step.limits)
    notes = list(step.notes)

    create = 0
    drain: tuple[NodeAction, ...] = ()
    wanted = replace_count + max(0, step.change)
    if wanted:
        pods_after = sum(1 for n in nodes if not n.terminating) - len(delete) - len(roll)
        create = min(wanted, max(0, spec.node_budget - pods_after))
        if create < wanted:
            limited.add(Limit.MAX_NODES)
            notes.append(f"node budget {spec.node_budget} reached (draining nodes still count)")
    if step.change < 0:
        victims = stoppable(staying, inc)[: -step.change]
        if len(victims) < -step.change:
            notes.append("nodes receiving members are drained once their arrivals are confirmed")
        drain = tuple(
            NodeAction(v.name, f"drain {v.name} ({v.members} members): scale in to {desired}")
            for v in victims
        )
    if step.change and (create > replace_count or drain):
        history = replace(history, last_scale=now)
    if leaving:
        notes.append(f"{', '.join(n.name for n in leaving)} terminating: moving its members away")

    # From here on, plan against the world as it will be once drains and
    # deletions are applied: drained servers are sources, never targets.
    drained = {a.server for a in drain}
    servers = [
        replace(s, draining=True, terminating=s.terminating or s.name in rolled)
        if s.name in drained | rolled
        else s
        for s in servers
        if s.name not in gone
    ]
    hosts = [s for s in servers if s.alive and s.ready and not s.draining]
    projected = {s.name: s.members - out[s.name] + inc[s.name] for s in servers}
    transfers: list[Transfer] = []
    if spec.transfer.mode != "redirect-only":
        movable = {s.name: s.members - out[s.name] for s in servers}
        transfers, transfer_notes = moves(spec, servers, projected, movable)
        notes += transfer_notes
    routes = route_table(spec, servers, projected)
    main_roll: NodeAction | None = None
    if main_going and main is not None and not main.terminating:
        in_flight = (
            ("nodes starting", starting),
            ("nodes not ready", stuck or [n for n in nodes if not n.alive]),
            ("nodes draining or stopping", draining or leaving or drain or delete),
            ("fresh metrics", stale),
            ("transfers", transfers or observations.transfers),
            ("new nodes", create or roll),
            ("shards on new nodes", placements(spec, hosts)),
        )
        busy = ", ".join(what for what, found in in_flight if found)
        main_roll, why = roll_main(main, routes, busy)
        if why:
            notes.append(why)

    return Decision(
        group=spec.group,
        desired_nodes=desired,
        history=history,
        create_nodes=create,
        create_reason=_create_reason(
            spec,
            create,
            replace_count,
            leaving + [n for n in active if n.name in rolled],
            members,
            desired,
        ),
        create_shards=placements(spec, hosts),
        routes=routes,
        transfers=tuple(transfers),
        drain=drain,
        delete=delete,
        roll=roll,
        roll_main=main_roll,
        limited=frozenset(limited),
        notes=tuple(notes),
        members=members,
        servers=len(routes),
        degraded=_problems(main, nodes, stale, stuck, now),
        pending_nodes=len(starting),
        draining_nodes=len(draining) + len(drain),
        terminating_nodes=len(leaving),
    )
