"""Leader election on a coordination.k8s.io Lease, so only one operator replica acts.

Standby replicas poll the Lease; the holder renews it every ``retry_seconds``.
A record counts as expired when its holder has not renewed it for
``lease_seconds`` as measured on *our* monotonic clock since we last saw it
change (the client-go rule), so clock skew between replicas does not matter.
A leader that cannot renew within ``lease_seconds`` gives up, because a
standby may already have taken over; the caller then stops acting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sipfleet.operator.kube import KUBE_ERRORS, Kube, Obj

log = logging.getLogger(__name__)


def default_identity() -> str:
    """Unique per process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _micro_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Seen:
    """The last Lease record we observed and when (monotonic) it last changed."""

    key: tuple[str | None, str | None] = (None, None)
    since: float = 0.0


class LeaderElector:
    """Acquire, renew and release one named Lease."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: int = 15,
        retry_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_seconds, self.retry_seconds = lease_seconds, retry_seconds
        self._clock = clock
        self._heartbeat = heartbeat
        """Called after every election round, won or not (the liveness probe's input)."""
        self._seen = _Seen()

    def _spec(self, transitions: int) -> Obj:
        now = _micro_time(datetime.now(UTC))
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def expired(self, lease: Obj) -> bool:
        """True when the holder has not renewed for a full lease on our clock."""
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity"):
            return True
        key = (spec.get("holderIdentity"), spec.get("renewTime"))
        now = self._clock()
        if key != self._seen.key:
            self._seen = _Seen(key, now)
            return False
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        return now - self._seen.since >= duration

    async def try_acquire_or_renew(self) -> bool:
        """One election round; True when we hold the Lease afterwards."""
        lease = await self.kube.read_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0),
            }
            return await self.kube.create_lease(self.namespace, body) is not None
        spec = lease.get("spec") or {}
        mine = spec.get("holderIdentity") == self.identity
        if not mine and not self.expired(lease):
            return False
        if mine:
            new_spec = {**spec, "renewTime": _micro_time(datetime.now(UTC))}
        else:
            new_spec = self._spec(int(spec.get("leaseTransitions") or 0) + 1)
        body = {**lease, "spec": new_spec}
        return await self.kube.replace_lease(self.namespace, body) is not None

    async def _round(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except KUBE_ERRORS as exc:
            log.warning("Lease %s/%s: election round failed: %s", self.namespace, self.name, exc)
            return False
        finally:
            self._heartbeat()

    async def acquire(self) -> None:
        """Block until this replica holds the Lease."""
        log.info("Waiting for Lease %s/%s as %s", self.namespace, self.name, self.identity)
        while not await self._round():
            await asyncio.sleep(self.retry_seconds)
        log.info("Acquired Lease %s/%s as %s", self.namespace, self.name, self.identity)

    async def hold(self, on_lost: Callable[[], None]) -> None:
        """Renew until a renewal deadline is missed, then call ``on_lost`` and return."""
        last_ok = self._clock()
        while True:
            await asyncio.sleep(self.retry_seconds)
            if await self._round():
                last_ok = self._clock()
            elif self._clock() - last_ok >= self.lease_seconds - self.retry_seconds:
                log.error("Lost Lease %s/%s; stopping", self.namespace, self.name)
                on_lost()
                return

    async def release(self) -> None:
        """Hand the Lease over at once on a clean shutdown (best effort)."""
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": None}
                await self.kube.replace_lease(self.namespace, {**lease, "spec": spec})
        except KUBE_ERRORS as exc:
            log.warning("Could not release Lease %s/%s: %s", self.namespace, self.name, exc)
