"""The operator's faster reactions: the load watch between passes (loadwatch.py) and
marking a starting server for the kubelet once it answers /readyz (readiness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sipfleet.operator import readiness
from sipfleet.operator.loadsource import ScrapeLoadSource
from sipfleet.operator.loadwatch import MIN_POLL_SECONDS, WatchTarget, read_members
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
async def server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A fake server: /metrics with the group's members, /readyz as told."""
    state: dict[str, Any] = {"members": 6, "ready": [503, 503, 200]}

    async def metrics(_: web.Request) -> web.Response:
        text = (
            "# TYPE sipfleet_node_members gauge\n"
            f'sipfleet_node_members{{group="{GROUP}"}} {state["members"]}\n'
        )
        return web.Response(text=text)

    async def readyz(_: web.Request) -> web.Response:
        answers = state["ready"]
        return web.Response(status=answers.pop(0) if len(answers) > 1 else answers[0])

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", state
    finally:
        await runner.cleanup()


async def test_read_members_sums_the_hosting_servers_or_says_none(
    server: tuple[str, dict[str, Any]],
) -> None:
    url, _ = server
    async with aiohttp.ClientSession() as session:
        source = ScrapeLoadSource(session, timeout=1.0)
        both = WatchTarget(target(5, 0).spec, {"a": url, "b": url}, 5, 0)
        assert await read_members(source, both) == 12
        gone = WatchTarget(both.spec, {"a": url, "b": "http://127.0.0.1:1"}, 5, 0)
        assert await read_members(source, gone) is None


async def test_wait_serving_polls_until_readyz_answers_200(
    server: tuple[str, dict[str, Any]],
) -> None:
    url, state = server
    async with aiohttp.ClientSession() as session:
        assert await readiness.wait_serving(session, url, lambda: False)
        assert state["ready"] == [200]
        assert not await readiness.wait_serving(session, "http://127.0.0.1:1", lambda: True)


def pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "f-node-1", "uid": "u"}, "status": status}


RUNNING = [{"containerID": "containerd://abc", "state": {"running": {}}}]


def test_a_starting_container_is_running_with_an_ip_and_not_ready() -> None:
    starting = pod(podIP="10.0.0.2", phase="Running", containerStatuses=RUNNING)
    assert readiness.starting_container(starting) == "containerd://abc"
    assert readiness.starting_container(pod(phase="Running", containerStatuses=RUNNING)) is None
    waiting = [{"containerID": "", "state": {"waiting": {}}}]
    assert readiness.starting_container(pod(podIP="10.0.0.2", containerStatuses=waiting)) is None
    ready = pod(
        podIP="10.0.0.2",
        phase="Running",
        containerStatuses=RUNNING,
        conditions=[{"type": "Ready", "status": "True"}],
    )
    assert readiness.starting_container(ready) is None
    stopping = pod(podIP="10.0.0.2", phase="Running", containerStatuses=RUNNING)
    stopping["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert readiness.starting_container(stopping) is None


def test_the_serving_mark_is_an_rfc3339_annotation_with_milliseconds() -> None:
    patch = readiness.serving_patch(1_700_000_000.25)
    assert patch == {
        "metadata": {"annotations": {readiness.SERVING_ANNOTATION: "2023-11-14T22:13:20.250Z"}}
    }
