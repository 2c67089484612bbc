"""Lease leader election: one holder at a time, takeover only after silence."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from sipfleet.operator.leader import LeaderElector


class LeaseStore:
    """An in-memory Lease API with the API server's optimistic concurrency."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if self.lease is not None:
            return None
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    async def replace_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            return None
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def elector(store: LeaseStore, ident: str, clock: Clock) -> LeaderElector:
    return LeaderElector(store, "ns", "sipfleet", ident, lease_seconds=15, clock=clock)  # type: ignore[arg-type]


async def test_only_one_replica_acquires() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert await a.try_acquire_or_renew()  # renewal
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"


async def test_standby_takes_over_only_after_a_silent_lease() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.now += 14
    assert not await b.try_acquire_or_renew()
    clock.now += 2
    assert await b.try_acquire_or_renew()
    assert store.lease is not None
    assert store.lease["spec"]["holderIdentity"] == "b"
    assert store.lease["spec"]["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew()  # the old leader cannot renew any more


async def test_renewals_keep_the_standby_waiting() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    await a.try_acquire_or_renew()
    for _ in range(10):
        clock.now += 10
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()


async def test_release_hands_over_at_once() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    await a.try_acquire_or_renew()
    await a.release()
    assert await b.try_acquire_or_renew()


async def test_lost_race_on_write_is_not_leadership() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    await a.try_acquire_or_renew()
    await a.release()
    stale = await store.read_lease("ns", "sipfleet")
    assert await b.try_acquire_or_renew()
    assert stale is not None
    assert await store.replace_lease("ns", stale) is None


class TickingClock(Clock):
    """Advances one second per reading, so deadlines pass without real waiting."""

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


async def test_a_leader_that_cannot_renew_gives_up() -> None:
    store, clock = LeaseStore(), TickingClock()
    a = LeaderElector(store, "ns", "l", "a", lease_seconds=5, retry_seconds=0.001, clock=clock)  # type: ignore[arg-type]
    assert await a.try_acquire_or_renew()
    assert store.lease is not None
    store.lease["spec"]["holderIdentity"] = "b"  # another replica took it meanwhile
    lost: list[bool] = []
    await a.hold(on_lost=lambda: lost.append(True))
    assert lost == [True]


async def test_a_renewing_leader_keeps_holding() -> None:
    store, clock = LeaseStore(), TickingClock()
    a = LeaderElector(store, "ns", "l", "a", lease_seconds=5, retry_seconds=0.001, clock=clock)  # type: ignore[arg-type]
    assert await a.try_acquire_or_renew()
    lost: list[bool] = []
    task = asyncio.create_task(a.hold(on_lost=lambda: lost.append(True)))
    await asyncio.sleep(0.2)
    task.cancel()
    assert lost == []
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"
