"""Process-wide state shared by the handlers: API clients and per-object memory.

Only one replica acts at a time (see leader.py), so in-memory memory is
enough: what is lost on restart is either re-read from the servers (routes
generations, running transfers) or rebuilt cautiously (the planner's History
starts empty, which delays scale-in by one stabilization window).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sipfleet.node.admin_client import AdminClient
from sipfleet.operator.errors import NotReady
from sipfleet.operator.kube import Kube, Obj
from sipfleet.operator.loadsource import LoadSource, PrometheusLoadSource
from sipfleet.operator.loadwatch import WatchTarget
from sipfleet.operator.models import MetricsSpec
from sipfleet.operator.planner import History
from sipfleet.operator.podevents import PodTransitions
from sipfleet.operator.routing import FleetRoutes
from sipfleet.operator.snapshot import SharedFetch
from sipfleet.operator.unmoved import UnmovedSeen

FleetKey = tuple[str, str]
"""(namespace, fleet name)."""

ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=5.0, connect=2.0)


def snapshot_ttl(interval: float) -> float:
    """How long a fleet snapshot serves passes: half the period, at most 1 s."""
    return min(1.0, interval / 2)


@dataclass
class ConferenceMemory:
    """What the control loop remembers about one SipConference between passes."""

    history: History = field(default_factory=History)
    last_pass: float | None = None
    changed_at: float = 0.0
    """time.monotonic() after the last pass that acted: later passes need a newer view."""
    ref: Obj | None = None
    """The SipConference's identity (apiVersion, kind, metadata) for Events, set by a pass."""
    spec: Mapping[str, Any] | None = None
    """Its spec as last seen by the timer; a Pod event's pass uses it."""
    fleet: FleetKey | None = None
    """(namespace, fleet name) it runs on, as last seen."""
    unmoved: dict[str, int] = field(default_factory=dict)
    """Stopping server -> members it could not move, as already posted in an Event."""
    restarts: dict[str, int] = field(default_factory=dict)
    """Server Pod UID -> container restarts seen at the last pass (recovery.py)."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Server -> members of the group whose session it ended unasked (ShardState.dropped),
    as already posted in an Event."""
    lost: dict[str, int] = field(default_factory=dict)
    """Server process (recovery.process_key) -> members it counted as lost with its
    previous process (ShardState.lost), as already posted in an Event."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Serialises this conference's passes (timer, Pod events, load watch)."""
    load_watch: WatchTarget | None = None
    """What the load watch reads between passes (loadwatch.py); None: no watch
    (Prometheus is the load source, or no pass has run yet)."""


@dataclass
class Runtime:
    kube: Kube
    session: aiohttp.ClientSession
    interval: float
    kubeconfig: str | None = None
    routes: dict[FleetKey, FleetRoutes] = field(default_factory=dict)
    conferences: dict[str, ConferenceMemory] = field(default_factory=dict)
    pod_transitions: PodTransitions = field(default_factory=PodTransitions)
    unmoved: UnmovedSeen = field(default_factory=UnmovedSeen)
    """Members stopping servers could not move, read while they stop (unmoved.py)."""
    watches: set[asyncio.Task[None]] = field(default_factory=set)
    """Running reads of stopping servers (kept so they are not collected)."""
    server_members: dict[FleetKey, dict[str, int]] = field(default_factory=dict)
    """Latest members per server (all groups), for the SipFleet status."""
    snapshots: SharedFetch[FleetKey, Any] = field(init=False)
    """Per-fleet snapshots (control.FleetSnapshot) shared by the fleet's conferences."""
    _pod_locks: dict[FleetKey, asyncio.Lock] = field(default_factory=dict)
    _route_locks: dict[FleetKey, asyncio.Lock] = field(default_factory=dict)
    _budget_locks: dict[FleetKey, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Half the period: each pass sees a view younger than the pass interval.
        self.snapshots = SharedFetch(snapshot_ttl(self.interval), keep_errors=(NotReady,))

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, kube: Kube, *, interval: float, kubeconfig: str | None = None
    ) -> AsyncIterator[Runtime]:
        async with aiohttp.ClientSession(timeout=ADMIN_TIMEOUT) as session:
            yield cls(kube=kube, session=session, interval=interval, kubeconfig=kubeconfig)

    def admin(self, base_url: str, token: str) -> AdminClient:
        """An admin client on the shared session (nothing to close)."""
        return AdminClient(base_url, token, session=self.session)

    def load_source(self, spec: MetricsSpec) -> LoadSource | None:
        """Prometheus when the fleet names one; None: the fleet view's scraped /metrics."""
        if not spec.prometheus_url:
            return None
        return PrometheusLoadSource(
            spec.prometheus_url,
            self.session,
            freshness_seconds=spec.stale_after_seconds,
            members_query=spec.queries.members,
        )

    def fleet_routes(self, key: FleetKey) -> FleetRoutes:
        return self.routes.setdefault(key, FleetRoutes())

    def memory(self, uid: str) -> ConferenceMemory:
        return self.conferences.setdefault(uid, ConferenceMemory())

    def serving(self, fleet: FleetKey, conference: str | None) -> list[ConferenceMemory]:
        """Conferences on ``fleet`` seen by a pass: the one named, or all (None)."""
        return [
            m
            for m in self.conferences.values()
            if m.fleet == fleet
            and m.ref is not None
            and (conference is None or m.ref["metadata"]["name"] == conference)
        ]

    def route_lock(self, key: FleetKey) -> asyncio.Lock:
        """Serialises route pushes in a fleet; a waiter usually finds its change pushed."""
        return self._route_locks.setdefault(key, asyncio.Lock())

    def budget_lock(self, key: FleetKey) -> asyncio.Lock:
        """Serialises a fleet's PodDisruptionBudget updates (list and write together)."""
        return self._budget_locks.setdefault(key, asyncio.Lock())

    def pod_lock(self, key: FleetKey) -> asyncio.Lock:
        """Serialises node Pod creation in a fleet, so two conferences never pick one name."""
        return self._pod_locks.setdefault(key, asyncio.Lock())
