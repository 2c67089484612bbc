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
- planning again after the executor applied a decision yields no new actions.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from sipfleet.operator.models import (
    ConferencePhase,
    ScalingPolicy,
    SipConferenceSpec,
    SipFleetSpec,
    TransferPolicy,
)

Role = Literal["main", "node"]
PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
Freshness = Literal["fresh", "stale", "missing"]
TransferMethod = Literal["refer", "refer-to-server"]
DecisionKind = Literal["scale-out", "scale-in", "transfer", "delete", "place", "steady"]

_TERMINATED: frozenset[str] = frozenset({"Succeeded", "Failed"})

STARTUP_GRACE_SECONDS = 120.0
"""A node not ready after this long stops blocking the next scale-out step."""


class Limit(StrEnum):
    """Why the planner did less than the load asked for."""

    MAX_NODES = "max-nodes"
    MAX_MEMBERS = "max-members"
    STEP = "step"
    COOLDOWN = "cooldown"
    STABILIZING = "stabilizing"
    METRICS_STALE = "metrics-stale"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class PlanSpec:
    """A conference's policy joined with its fleet's limits."""

    group: str
    members_per_server: int
    scaling: ScalingPolicy = field(default_factory=ScalingPolicy)
    transfer: TransferPolicy = field(default_factory=TransferPolicy)
    max_members: int | None = None
    min_nodes: int = 0
    max_nodes: int = 10
    other_nodes: int = 0
    """Node Pods of the same fleet owned by other conferences (count toward max_nodes)."""

    @classmethod
    def from_resources(
        cls, conference: SipConferenceSpec, fleet: SipFleetSpec, *, other_nodes: int = 0
    ) -> PlanSpec:
        """Join a SipConference spec with its SipFleet spec."""
        return cls(
            group=conference.uri,
            members_per_server=conference.members_per_server(fleet),
            scaling=conference.scaling,
            transfer=conference.transfer,
            max_members=conference.capacity.max_members,
            min_nodes=fleet.min_nodes,
            max_nodes=fleet.max_nodes,
            other_nodes=other_nodes,
        )

    @property
    def node_budget(self) -> int:
        """Node Pods this conference may have at most."""
        return max(0, self.max_nodes - self.other_nodes)


@dataclass(frozen=True)
class Shard:
    """The group's URI on one server, as the server reports it (``/v1/state``)."""

    uri: str
    members: int
    capacity: int


@dataclass(frozen=True)
class ServerObservation:
    """One server (the main server or one of the conference's node Pods).

    ``draining`` is true once the executor marked the Pod for draining (or the
    server reports it), so a never-started Pod can be drained too. ``shard``
    is None when the server does not host the group or cannot be asked; a
    Pod that died must be reported with ``shard=None`` so it can be replaced.
    ``metrics`` says whether the load samples for this server are fresh.
    """

    name: str
    role: Role
    ready: bool
    phase: PodPhase = "Running"
    draining: bool = False
    shard: Shard | None = None
    metrics: Freshness = "fresh"
    created_at: float = 0.0

    @property
    def alive(self) -> bool:
        """The Pod has not terminated."""
        return self.phase not in _TERMINATED

    @property
    def members(self) -> int:
        """Members of the group on this server (0 without a shard)."""
        return self.shard.members if self.shard else 0


@dataclass(frozen=True)
class InFlightTransfer:
    """A transfer the servers are still running (``state == "running"``)."""

    source: str
    target: str
    remaining: int


@dataclass(frozen=True)
class Observations:
    """Everything the planner knows about the world at ``now``."""

    servers: tuple[ServerObservation, ...]
    transfers: tuple[InFlightTransfer, ...] = ()

    @property
    def main(self) -> ServerObservation | None:
        """The main server, if observed."""
        return next((s for s in self.servers if s.role == "main"), None)

    @property
    def nodes(self) -> tuple[ServerObservation, ...]:
        """The conference's node Pods."""
        return tuple(s for s in self.servers if s.role == "node")


@dataclass(frozen=True)
class Recommendation:
    """The node count the load asked for at one instant."""

    time: float
    nodes: int


@dataclass(frozen=True)
class History:
    """Scaling memory, returned in every Decision for the caller to pass back.

    ``started`` is when the memory begins: a scale-in waits until the whole
    stabilization window is covered, so a restarted operator is cautious.
    """

    started: float | None = None
    recommendations: tuple[Recommendation, ...] = ()
    last_scale: float | None = None


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class ShardPlacement:
    """Create the group's URI on a server (``POST /v1/shards``)."""

    server: str
    group: str
    capacity: int
    reason: str


@dataclass(frozen=True)
class Route:
    """One entry of a group's routing table (``PUT /v1/routes``)."""

    server: str
    uri: str
    state: Literal["active", "draining"]
    free: int

    def to_json(self) -> dict[str, str | int]:
        """The entry as the admin API expects it."""
        return {"server": self.server, "uri": self.uri, "state": self.state, "free": self.free}


@dataclass(frozen=True)
class Transfer:
    """Move members from ``source`` to ``target`` (``POST /v1/transfers`` on the source)."""

    source: str
    target: str
    target_uri: str
    count: int
    method: TransferMethod
    rate: float
    reason: str


@dataclass(frozen=True)
class NodeAction:
    """Drain or delete one node Pod."""

    server: str
    reason: str


@dataclass(frozen=True)
class Decision:
    """What to do now, and why. Empty action fields mean "nothing to do"."""

    group: str
    desired_nodes: int
    history: History
    create_nodes: int = 0
    create_reason: str = ""
    create_shards: tuple[ShardPlacement, ...] = ()
    routes: tuple[Route, ...] = ()
    transfers: tuple[Transfer, ...] = ()
    drain: tuple[NodeAction, ...] = ()
    delete: tuple[NodeAction, ...] = ()
    limited: frozenset[Limit] = frozenset()
    notes: tuple[str, ...] = ()
    """Why something was held back (limits, stale metrics, waiting); for status."""
    members: int = 0
    servers: int = 0
    """Ready servers hosting the group (the routes' length)."""
    degraded: tuple[str, ...] = ()
    """Problems worth a Degraded condition (main down, failed Pods, stale metrics)."""
    pending_nodes: int = 0
    draining_nodes: int = 0

    @property
    def has_actions(self) -> bool:
        """Whether the executor has anything to do besides pushing routes."""
        return bool(
            self.create_nodes or self.create_shards or self.transfers or self.drain or self.delete
        )

    @property
    def kind(self) -> DecisionKind:
        """The most significant action, for ``status.lastDecision.kind``."""
        if self.create_nodes:
            return "scale-out"
        if self.drain:
            return "scale-in"
        if self.transfers:
            return "transfer"
        if self.delete:
            return "delete"
        if self.create_shards:
            return "place"
        return "steady"

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every action's reason, then the notes."""
        return (
            ((self.create_reason,) if self.create_nodes else ())
            + tuple(a.reason for a in self.drain)
            + tuple(t.reason for t in self.transfers)
            + tuple(a.reason for a in self.delete)
            + tuple(p.reason for p in self.create_shards)
            + self.notes
        )

    @property
    def reason(self) -> str:
        """One line for ``status.lastDecision.reason`` and Events."""
        steady = f"steady: {self.members} members on {self.servers} servers"
        return "; ".join(self.reasons) or steady

    @property
    def scaling(self) -> bool:
        """Nodes are being added or removed (or members moved)."""
        return bool(
            self.create_nodes
            or self.drain
            or self.transfers
            or self.pending_nodes
            or self.draining_nodes
        )

    @property
    def phase(self) -> ConferencePhase:
        """The conference phase this decision implies (Terminating is the caller's)."""
        if not self.routes:  # no ready main server hosting the group yet
            return "Degraded" if self.members else "Pending"
        if self.degraded:
            return "Degraded"
        if self.scaling:
            return "Scaling"
        return "Running"


# --------------------------------------------------------------------------- policy


def members_at_load(capacity: int, fraction: float) -> int:
    """Members a server of ``capacity`` holds at ``fraction`` of it (at least 1)."""
    return max(1, math.floor(capacity * fraction + 1e-9))


def recommend_nodes(spec: PlanSpec, members: int) -> tuple[int, frozenset[Limit]]:
    """Nodes (besides the main server) that keep ``members`` at the target load.

    Clamped to [min_nodes, node budget]; the flags say which bound cut it.
    """
    per_server = members_at_load(spec.members_per_server, spec.scaling.target_load)
    limits: set[Limit] = set()
    servers = max(1, math.ceil(members / per_server))
    if spec.max_members is not None:
        cap = max(1, math.ceil(spec.max_members / per_server))
        if servers > cap:
            servers = cap
            limits.add(Limit.MAX_MEMBERS)
    nodes = max(servers - 1, spec.min_nodes)
    if nodes > spec.node_budget:
        nodes = spec.node_budget
        limits.add(Limit.MAX_NODES)
    return nodes, frozenset(limits)


def _remember(spec: PlanSpec, history: History, now: float, nodes: int) -> History:
    """Append this instant's recommendation and forget what no window needs."""
    horizon = max(
        spec.scaling.scale_up_stabilization_seconds, spec.scaling.scale_down_stabilization_seconds
    )
    kept = tuple(r for r in history.recommendations if r.time >= now - horizon and r.time < now)
    return replace(
        history,
        started=history.started if history.started is not None else now,
        recommendations=(*kept, Recommendation(now, nodes)),
    )


def _window(history: History, now: float, seconds: int) -> list[int]:
    return [r.nodes for r in history.recommendations if r.time >= now - seconds]


@dataclass(frozen=True)
class _Step:
    """The size change this tick: +n create, -n drain, with flags and notes."""

    change: int = 0
    limits: frozenset[Limit] = frozenset()
    notes: tuple[str, ...] = ()


def _held(limit: Limit, note: str) -> _Step:
    return _Step(limits=frozenset({limit}), notes=(note,))


def _bounded(
    spec: PlanSpec, target: int, current: int, desired: int, in_progress: int, cooling: bool
) -> _Step:
    """Cooldown and the step bound; ``in_progress`` nodes still count toward the step.

    Counting the previous step's unfinished nodes (still starting, or still
    draining) makes re-planning before they finish a no-op.
    """
    direction = "scale-out" if target > current else "scale-in"
    if cooling:
        return _held(Limit.COOLDOWN, f"{direction} to {target} nodes waits for the cooldown")
    limits = {Limit.STABILIZING} if target != desired else set()
    change = abs(target - current)
    room = max(0, spec.scaling.max_nodes_per_step - in_progress)
    if change > room:
        change = room
        limits.add(Limit.STEP)
    if change == 0:
        return _Step(
            limits=frozenset(limits),
            notes=(f"{direction} to {target} nodes waits for {in_progress} nodes in progress",),
        )
    return _Step(change=change if target > current else -change, limits=frozenset(limits))


def _scale_step(
    spec: PlanSpec,
    history: History,
    now: float,
    current: int,
    desired: int,
    progress: tuple[int, int],
    stale: list[str],
) -> _Step:
    """Stabilization windows, the stale-metrics rule, then cooldown and step bound.

    ``progress`` is (nodes still starting, nodes still draining).
    """
    policy = spec.scaling
    cooling = history.last_scale is not None and now - history.last_scale < policy.cooldown_seconds
    if desired > current:
        target = min(_window(history, now, policy.scale_up_stabilization_seconds))
        if target <= current:
            return _held(
                Limit.STABILIZING, f"scale-out to {desired} nodes waits for the scale-up window"
            )
        return _bounded(spec, target, current, desired, progress[0], cooling)
    if desired < current:
        if stale:
            return _held(
                Limit.METRICS_STALE,
                f"no scale-in: metrics stale or missing for {', '.join(stale)}",
            )
        window = policy.scale_down_stabilization_seconds
        assert history.started is not None  # _remember sets it
        target = max(_window(history, now, window))
        if history.started > now - window or target >= current:
            return _held(
                Limit.STABILIZING, f"scale-in to {desired} nodes waits for the scale-down window"
            )
        return _bounded(spec, target, current, desired, progress[1], cooling)
    return _Step()


# --------------------------------------------------------------------------- placement


def _flows(observations: Observations) -> tuple[Counter[str], Counter[str]]:
    """Members still in flight: (leaving each source, arriving at each target)."""
    out: Counter[str] = Counter()
    inc: Counter[str] = Counter()
    for t in observations.transfers:
        out[t.source] += t.remaining
        inc[t.target] += t.remaining
    return out, inc


def _is_empty(server: ServerObservation, out: Counter[str], inc: Counter[str]) -> bool:
    """Provably no members: never started, or ready with fresh metrics and none."""
    if out[server.name] or inc[server.name] or server.members:
        return False
    if server.phase == "Pending":
        return True
    return server.ready and server.metrics == "fresh"


def _deletions(
    nodes: tuple[ServerObservation, ...], out: Counter[str], inc: Counter[str]
) -> tuple[NodeAction, ...]:
    actions = []
    for node in nodes:
        if not node.alive and node.members == 0:
            actions.append(NodeAction(node.name, f"delete {node.name}: pod {node.phase}"))
        elif node.draining and node.alive and _is_empty(node, out, inc):
            actions.append(NodeAction(node.name, f"delete {node.name}: drained and empty"))
    return tuple(actions)


def _drain_order(node: ServerObservation) -> tuple[int, bool, float, str]:
    """Emptiest first; among equals a not-ready one, then the newest."""
    return (node.members, node.ready, -node.created_at, node.name)


def _placements(spec: PlanSpec, hosts: list[ServerObservation]) -> tuple[ShardPlacement, ...]:
    return tuple(
        ShardPlacement(
            s.name,
            spec.group,
            spec.members_per_server,
            f"create {spec.group} on {s.name}",
        )
        for s in hosts
        if s.shard is None
    )


def _transfers(
    spec: PlanSpec,
    servers: list[ServerObservation],
    projected: dict[str, int],
    movable: dict[str, int],
) -> tuple[list[Transfer], list[str]]:
    """Move members off draining and over-watermark servers; updates ``projected``.

    ``projected`` counts members in flight at their target; ``movable`` only
    the members a source has and is not already moving (arrivals cannot be
    moved on before they arrive).
    """
    policy = spec.scaling
    targets = [s for s in servers if s.shard and not s.draining and s.ready and s.alive]
    room = {
        s.name: members_at_load(s.shard.capacity, policy.target_load) - projected[s.name]
        for s in targets
        if s.shard
    }
    moves: list[tuple[ServerObservation, ServerObservation, int, str]] = []
    notes: list[str] = []
    for src in servers:
        if not (src.shard and src.ready and src.alive and movable[src.name] > 0):
            continue
        if src.draining:
            need, why = movable[src.name], "draining"
        else:
            limit = members_at_load(src.shard.capacity, policy.high_watermark)
            if projected[src.name] <= limit:
                continue
            excess = projected[src.name] - members_at_load(src.shard.capacity, policy.target_load)
            need = min(excess, movable[src.name])
            why = f"above high watermark ({projected[src.name]}/{src.shard.capacity})"
        for dst in sorted(targets, key=lambda t: (-room[t.name], t.name)):
            if need <= 0 or room[dst.name] <= 0 or dst.name == src.name:
                continue
            count = min(need, room[dst.name])
            moves.append((src, dst, count, why))
            room[dst.name] -= count
            projected[dst.name] += count
            projected[src.name] -= count
            need -= count
        if need > 0:
            notes.append(f"{need} members on {src.name} wait for room ({why})")
    method: TransferMethod = (
        "refer-to-server" if spec.transfer.mode == "refer-to-server" else "refer"
    )
    rate = spec.transfer.members_per_second / max(1, len(moves))
    transfers = [
        Transfer(
            source=src.name,
            target=dst.name,
            target_uri=dst.shard.uri,
            count=count,
            method=method,
            rate=rate,
            reason=f"move {count} members {src.name} -> {dst.name}: {src.name} {why}",
        )
        for src, dst, count, why in moves
        if dst.shard
    ]
    return transfers, notes


def _routes(
    spec: PlanSpec, servers: list[ServerObservation], projected: dict[str, int]
) -> tuple[Route, ...]:
    """Main first, then active nodes oldest first, then draining ones (leaves).

    Empty unless the main server is ready and hosts the group: a table
    without its root would cut the distribution tree, so none is better.
    """
    hosting = [s for s in servers if s.shard and s.ready and s.alive]
    if not any(s.role == "main" for s in hosting):
        return ()

    def order(s: ServerObservation) -> tuple[bool, bool, float, str]:
        return (s.role != "main", s.draining, s.created_at, s.name)

    routes = []
    for s in sorted(hosting, key=order):
        assert s.shard is not None
        if s.draining:
            routes.append(Route(s.name, s.shard.uri, "draining", 0))
        else:
            limit = members_at_load(s.shard.capacity, spec.scaling.high_watermark)
            routes.append(Route(s.name, s.shard.uri, "active", max(0, limit - projected[s.name])))
    return tuple(routes)


# --------------------------------------------------------------------------- plan


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


def plan(spec: PlanSpec, observations: Observations, history: History, now: float) -> Decision:
    """Decide the next step for one conference. Pure: same inputs, same Decision."""
    main = observations.main
    nodes = tuple(sorted(observations.nodes, key=lambda n: n.name))
    servers = ([main] if main else []) + list(nodes)
    out, inc = _flows(observations)
    members = sum(s.members for s in servers)
    stale = [s.name for s in servers if s.phase == "Running" and s.metrics != "fresh"]

    desired, limits = recommend_nodes(spec, members)
    history = _remember(spec, history, now, desired)
    active = [n for n in nodes if n.alive and not n.draining]
    starting = [n for n in active if not n.ready and now - n.created_at < STARTUP_GRACE_SECONDS]
    stuck = [n for n in active if not n.ready and n not in starting]
    delete = _deletions(nodes, out, inc)
    gone = {a.server for a in delete}
    draining = [n for n in nodes if n.draining and n.alive and n.name not in gone]
    step = _scale_step(
        spec, history, now, len(active), desired, (len(starting), len(draining)), stale
    )
    limited = set(limits | step.limits)
    notes = list(step.notes)

    create = 0
    drain: tuple[NodeAction, ...] = ()
    if step.change > 0:
        pods_after = len(nodes) - len(delete)
        create = min(step.change, max(0, spec.node_budget - pods_after))
        if create < step.change:
            limited.add(Limit.MAX_NODES)
            notes.append(f"node budget {spec.node_budget} reached (draining nodes still count)")
    elif step.change < 0:
        victims = sorted(active, key=_drain_order)[: -step.change]
        drain = tuple(
            NodeAction(v.name, f"drain {v.name} ({v.members} members): scale in to {desired}")
            for v in victims
        )
    if create or drain:
        history = replace(history, last_scale=now)

    # From here on, plan against the world as it will be once drains and
    # deletions are applied: drained servers are sources, never targets.
    drained = {a.server for a in drain}
    servers = [
        replace(s, draining=True) if s.name in drained else s for s in servers if s.name not in gone
    ]
    hosts = [s for s in servers if s.alive and s.ready and not s.draining]
    projected = {s.name: s.members - out[s.name] + inc[s.name] for s in servers}
    transfers: list[Transfer] = []
    if spec.transfer.mode != "redirect-only":
        movable = {s.name: s.members - out[s.name] for s in servers}
        transfers, transfer_notes = _transfers(spec, servers, projected, movable)
        notes += transfer_notes
    routes = _routes(spec, servers, projected)

    return Decision(
        group=spec.group,
        desired_nodes=desired,
        history=history,
        create_nodes=create,
        create_reason=(
            f"scale out by {create}: {members} members need {desired} nodes "
            f"at target load {spec.scaling.target_load:g}"
        ),
        create_shards=_placements(spec, hosts),
        routes=routes,
        transfers=tuple(transfers),
        drain=drain,
        delete=delete,
        limited=frozenset(limited),
        notes=tuple(notes),
        members=members,
        servers=len(routes),
        degraded=_problems(main, nodes, stale, stuck, now),
        pending_nodes=len(starting),
        draining_nodes=len(draining) + len(drain),
    )
