"""Process-wide state shared by the handlers: API clients and per-object memory.

Only one replica acts at a time (see leader.py), so in-memory memory is
enough: what is lost on restart is either re-read from the servers (routes
generations, running transfers) or rebuilt cautiously (the planner's History
starts empty, which delays scale-in by one stabilization window).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from sipfleet.node.admin_client import AdminClient
from sipfleet.operator.kube import Kube
from sipfleet.operator.loadsource import LoadSource, PrometheusLoadSource, ScrapeLoadSource
from sipfleet.operator.models import MetricsSpec
from sipfleet.operator.planner import History
from sipfleet.operator.routing import FleetRoutes

FleetKey = tuple[str, str]
"""(namespace, fleet name)."""

ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=5.0, connect=2.0)


@dataclass
class ConferenceMemory:
    """What the control loop remembers about one SipConference between passes."""

    history: History = field(default_factory=History)
    last_pass: float | None = None


@dataclass
class Runtime:
    kube: Kube
    session: aiohttp.ClientSession
    interval: float
    kubeconfig: str | None = None
    routes: dict[FleetKey, FleetRoutes] = field(default_factory=dict)
    conferences: dict[str, ConferenceMemory] = field(default_factory=dict)
    server_members: dict[FleetKey, dict[str, int]] = field(default_factory=dict)
    """Latest members per server (all groups), for the SipFleet status."""
    _pod_locks: dict[FleetKey, asyncio.Lock] = field(default_factory=dict)

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

    def load_source(self, spec: MetricsSpec) -> LoadSource:
        """Prometheus when the fleet names one, else direct scraping."""
        if spec.prometheus_url:
            return PrometheusLoadSource(
                spec.prometheus_url,
                self.session,
                freshness_seconds=spec.stale_after_seconds,
                members_query=spec.queries.members,
            )
        return ScrapeLoadSource(self.session)

    def fleet_routes(self, key: FleetKey) -> FleetRoutes:
        return self.routes.setdefault(key, FleetRoutes())

    def memory(self, uid: str) -> ConferenceMemory:
        return self.conferences.setdefault(uid, ConferenceMemory())

    def pod_lock(self, key: FleetKey) -> asyncio.Lock:
        """Serialises node Pod creation in a fleet, so two conferences never pick one name."""
        return self._pod_locks.setdefault(key, asyncio.Lock())
