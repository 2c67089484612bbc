"""SharedFetch: one fetch per fleet and interval, never older than the caller's last action."""

from __future__ import annotations

import asyncio

import pytest
from sipfleet.operator.errors import NotReady
from sipfleet.operator.snapshot import SharedFetch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None

    async def __call__(self) -> int:
        self.calls += 1
        await self.gate.wait()
        if self.error:
            raise self.error
        return self.calls


async def test_concurrent_callers_share_one_fetch_and_reuse_it_within_the_ttl() -> None:
    clock, fetch = Clock(), Fetcher()
    cache: SharedFetch[str, int] = SharedFetch(1.0, clock=clock)
    fetch.gate.clear()
    waiters = [asyncio.ensure_future(cache.get("f", fetch)) for _ in range(50)]
    await asyncio.sleep(0)
    fetch.gate.set()
    assert await asyncio.gather(*waiters) == [1] * 50
    clock.now += 0.9
    assert await cache.get("f", fetch) == 1
    assert await cache.get("other", fetch) == 2  # per key
    clock.now += 0.2  # expired: served stale while one refresh runs
    assert await cache.get("f", fetch) == 1
    assert await cache.get("f", fetch) == 1
    await asyncio.sleep(0.01)  # the refresh and its done-callbacks run
    assert fetch.calls == 3
    assert await cache.get("f", fetch) == 3
    clock.now += 2.5  # too old to serve even while refreshing
    fetch.gate.clear()
    waiter = asyncio.ensure_future(cache.get("f", fetch))
    await asyncio.sleep(0)
    assert not waiter.done()
    fetch.gate.set()
    assert await waiter == 4


async def test_a_result_fetched_before_not_before_is_never_served() -> None:
    clock, fetch = Clock(), Fetcher()
    cache: SharedFetch[str, int] = SharedFetch(1.0, clock=clock)
    assert await cache.get("f", fetch) == 1
    clock.now += 0.1
    assert await cache.get("f", fetch, not_before=100.05) == 2
    assert await cache.get("f", fetch, not_before=100.05) == 2


async def test_kept_errors_are_cached_others_are_not() -> None:
    clock, fetch = Clock(), Fetcher()
    cache: SharedFetch[str, int] = SharedFetch(1.0, keep_errors=(NotReady,), clock=clock)
    fetch.error = NotReady("FleetNotFound", "no fleet")
    for _ in range(3):
        with pytest.raises(NotReady):
            await cache.get("f", fetch)
    assert fetch.calls == 1
    fetch.error = OSError("refused")
    clock.now += 2.5
    for _ in range(2):
        with pytest.raises(OSError):
            await cache.get("f", fetch)
    assert fetch.calls == 3
    fetch.error = None
    assert await cache.get("f", fetch) == 4


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch() -> None:
    clock, fetch = Clock(), Fetcher()
    cache: SharedFetch[str, int] = SharedFetch(1.0, clock=clock)
    fetch.gate.clear()
    first = asyncio.ensure_future(cache.get("f", fetch))
    second = asyncio.ensure_future(cache.get("f", fetch))
    await asyncio.sleep(0)
    first.cancel()
    fetch.gate.set()
    assert await second == 1
    assert fetch.calls == 1
