"""Counts of members a stopping server could not move, read while it stops."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from sipfleet.operator import unmoved
from sipfleet.operator.unmoved import UnmovedSeen, merged

GROUP = "sip:conf@example.com"


def test_a_count_is_kept_for_its_conference_and_the_main_server_serves_all() -> None:
    seen = UnmovedSeen()
    assert seen.record("ns", "f-node-1", "conf", {GROUP: 4}, now=0.0)
    assert seen.record("ns", "f-main", None, {GROUP: 2}, now=0.0)
    assert seen.counts("ns", "conf", GROUP, now=1.0) == {"f-node-1": 4, "f-main": 2}
    assert seen.counts("ns", "other", GROUP, now=1.0) == {"f-main": 2}
    assert seen.counts("other-ns", "conf", GROUP, now=1.0) == {}
    assert seen.counts("ns", "conf", "sip:else@example.com", now=1.0) == {}


def test_a_count_only_grows_and_is_dropped_after_keep_seconds() -> None:
    seen = UnmovedSeen()
    assert seen.record("ns", "n1", "conf", {GROUP: 4}, now=0.0)
    assert not seen.record("ns", "n1", "conf", {GROUP: 3}, now=0.5)  # a later, smaller read
    assert seen.counts("ns", "conf", GROUP, now=1.0) == {"n1": 4}
    assert seen.counts("ns", "conf", GROUP, now=0.5 + unmoved.KEEP_SECONDS + 1) == {}
    assert seen.seen == {}


def test_merged_takes_each_servers_largest_count() -> None:
    assert merged({"a": 1, "b": 5}, {"a": 3}, {}) == {"a": 3, "b": 5}


async def test_watch_hands_over_every_non_zero_reading_until_the_grace_is_over() -> None:
    counts = iter([0, 0, 7, 7])

    async def metrics(_: web.Request) -> web.Response:
        value = next(counts, 0)
        text = (
            "# TYPE sipfleet_node_unmoved_members_total counter\n"
            f'sipfleet_node_unmoved_members_total{{group="{GROUP}"}} {value}\n'
        )
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    got: list[dict[str, int]] = []

    async def found(reading: dict[str, int]) -> None:
        got.append(reading)

    try:
        async with aiohttp.ClientSession() as session:
            await unmoved.watch(session, f"http://127.0.0.1:{port}", grace=-4.0, found=found)
    finally:
        await runner.cleanup()
    assert got == [{GROUP: 7}, {GROUP: 7}]
