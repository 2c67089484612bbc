"""The planner's values: what it is told (spec, observations, history) and
what it decides. All immutable; the caller keeps ``History`` between calls."""

from __future__ import annotations

from dataclasses import dataclass, field
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
DecisionKind = Literal["scale-out", "scale-in", "rollout", "transfer", "delete", "place", "steady"]

_TERMINATED: frozenset[str] = frozenset({"Succeeded", "Failed"})


class Limit(StrEnum):
    """Why the planner did less than the load asked for."""

    MAX_NODES = "max-nodes"
    MAX_MEMBERS = "max-members"
    STEP = "step"
    COOLDOWN = "cooldown"
    STABILIZING = "stabilizing"
    METRICS_STALE = "metrics-stale"


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
    max_unavailable: int = 1
    """Node Pods a rolling update stops at once (SipFleet spec.rollout.maxUnavailable)."""
    roll_main_server: bool = True
    """A rolling update replaces the main server too (SipFleet spec.rollout.mainServer)."""
    others_settled: bool = True
    """The other conferences' node Pods are all Ready, updated and staying (the
    main server hosts every group: it is rolled only then)."""

    @classmethod
    def from_resources(
        cls,
        conference: SipConferenceSpec,
        fleet: SipFleetSpec,
        *,
        other_nodes: int = 0,
        others_settled: bool = True,
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
            max_unavailable=fleet.rollout.max_unavailable,
            roll_main_server=fleet.rollout.main_server,
            others_settled=others_settled,
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
    ``terminating``: Kubernetes is stopping the Pod (deletionTimestamp); the
    server moves its own members away (graceful exit), so it is draining,
    no capacity and no transfer source, but stays routed while it answers.
    """

    name: str
    role: Role
    ready: bool
    phase: PodPhase = "Running"
    draining: bool = False
    shard: Shard | None = None
    metrics: Freshness = "fresh"
    created_at: float = 0.0
    terminating: bool = False
    outdated: bool = False
    """The Pod runs an older template than the fleet's for its role (a rolling
    update replaces it: nodes first, the main server last)."""

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
    roll: tuple[NodeAction, ...] = ()
    """Outdated nodes to stop (graceful exit) for replacements of the new template."""
    roll_main: NodeAction | None = None
    """The outdated main server to stop (graceful exit), last and alone; the
    fleet recreates it from the new template once its Pod is gone."""
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
    terminating_nodes: int = 0
    """Nodes Kubernetes is stopping (they move their own members away)."""

    @property
    def has_actions(self) -> bool:
        """Whether the executor has anything to do besides pushing routes."""
        return bool(
            self.create_nodes
            or self.create_shards
            or self.transfers
            or self.drain
            or self.delete
            or self.roll
            or self.roll_main
        )

    @property
    def kind(self) -> DecisionKind:
        """The most significant action, for ``status.lastDecision.kind``."""
        if self.roll or self.roll_main:
            return "rollout"
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
            tuple(a.reason for a in self.roll)
            + ((self.roll_main.reason,) if self.roll_main else ())
            + ((self.create_reason,) if self.create_nodes else ())
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
            or self.roll
            or self.roll_main
            or self.transfers
            or self.pending_nodes
            or self.draining_nodes
            or self.terminating_nodes
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
