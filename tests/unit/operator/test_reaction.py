"""The load watch between passes (loadwatch.py): a join over the target starts a pass
at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from sipfleet.operator.loadsource import ScrapeLoadSource
from sipfleet.operator.loadwatch import MIN_POLL_SECONDS, SharedScrapes, WatchTarget, read_members
from sipfleet.operator.models import ScalingPolicy
from sipfleet.operator.planning.values import PlanSpec

GROUP = "sip:conf@example.com"


def target(members: int, desired: int, *, interval: int = 1, max_nodes: int = 10) -> WatchTarget:
    spec = PlanSpec(
        group=GROUP,
        members_per_server=10,
        scaling=ScalingPolicy(target_load=0.5, interval_seconds=interval),
        max_nodes=max_nodes,
    )
    return WatchTarget(spec, {"f-main": "http://m"}, members, desired)


def test_the_watch_asks_for_a_pass_only_when_more_nodes_are_needed() -> None:
    at_target = target(members=5, desired=0)  # 5 members at 5 per server: main alone
    assert not at_target.asks_for_more(5)
    assert at_target.asks_for_more(6)  # the crossing: one node needed
    assert not at_target.asks_for_more(4)  # fewer members never start a pass
    assert not target(members=6, desired=1).asks_for_more(10)  # one node covers 10
    assert target(members=6, desired=1).asks_for_more(11)


def test_the_watch_never_asks_beyond_the_node_budget() -> None:
    full = target(members=10, desired=1, max_nodes=1)
    assert not full.asks_for_more(50)


def test_the_poll_is_a_quarter_of_the_interval_and_never_below_the_floor() -> None:
    assert target(5, 0, interval=1).poll_seconds == MIN_POLL_SECONDS
    assert target(5, 0, interval=2).poll_seconds == 0.5
    assert target(5, 0, interval=8).poll_seconds == 2.0


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[int]]]:
    """A fake server's base URL and its count of /metrics reads (6 members of the group)."""
    reads = [0]

    async def metrics(_: web.Request) -> web.Response:
        reads[0] += 1
        text = f'# TYPE sipfleet_node_members gauge\nsipfleet_node_members{{group="{GROUP}"}} 6\n'
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", reads
    finally:
        await runner.cleanup()


async def test_read_members_sums_the_hosting_servers_or_says_none(
    server: tuple[str, list[int]],
) -> None:
    url, _ = server
    async with aiohttp.ClientSession() as session:
        scrapes = SharedScrapes(ScrapeLoadSource(session, timeout=1.0))
        both = WatchTarget(target(5, 0).spec, {"a": url, "b": url + "/"}, 5, 0)
        assert await read_members(scrapes, both) == 12
        gone = WatchTarget(both.spec, {"a": url, "b": "http://127.0.0.1:1"}, 5, 0)
        assert await read_members(scrapes, gone) is None


async def test_conferences_share_one_read_per_server_and_poll(
    server: tuple[str, list[int]],
) -> None:
    url, reads = server
    async with aiohttp.ClientSession() as session:
        scrapes = SharedScrapes(ScrapeLoadSource(session, timeout=1.0), ttl=60.0)
        watches = [WatchTarget(target(5, 0).spec, {"f-main": url}, 5, 0) for _ in range(50)]
        totals = await asyncio.gather(*(read_members(scrapes, w) for w in watches))
    assert totals == [6] * 50
    assert reads == [1]
