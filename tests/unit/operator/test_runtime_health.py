"""Liveness on every replica: heartbeats of the event loop and the Lease loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from sipfleet.operator import health
from sipfleet.operator.leader import LeaderElector


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def served() -> Iterator[tuple[str, health.Heartbeats, Clock]]:
    clock = Clock()
    beats = health.Heartbeats(clock)
    server = health.serve("http://127.0.0.1:0/healthz", beats)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", beats, clock
    finally:
        server.shutdown()
        server.server_close()


def test_stale_heartbeat_turns_liveness_503_and_names_it(
    served: tuple[str, health.Heartbeats, Clock],
) -> None:
    base, beats, clock = served
    beats.expect("loop", 10)
    beats.expect("lease", 30)
    assert get(base + "/healthz")[0] == 200
    clock.now += 11
    status, body = get(base + "/healthz")
    assert status == 503
    assert body["stale"] == ["loop"]
    beats.beat("loop")
    assert get(base + "/healthz") == (
        200,
        {"alive": True, "stale": [], "ages": {"loop": 0.0, "lease": 11.0}},
    )
    clock.now += 20
    assert get(base + "/healthz")[1]["stale"] == ["lease", "loop"]


def test_other_paths_are_404(served: tuple[str, health.Heartbeats, Clock]) -> None:
    base, _, _ = served
    status, body = get(base + "/metrics")
    assert status == 404 and "/healthz" in str(body["error"])


def test_a_blocked_event_loop_fails_liveness_while_the_server_still_answers(
    served: tuple[str, health.Heartbeats, Clock],
) -> None:
    """The real beat_loop on a real loop; the loop is then blocked for good."""
    base, beats, clock = served
    loop = asyncio.new_event_loop()
    release = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(health.beat_loop(beats, every=0.01))
        await asyncio.sleep(0.05)
        release.wait(10)  # blocks the loop: no more beats
        task.cancel()

    runner = threading.Thread(target=loop.run_until_complete, args=(main(),))
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while "loop" not in beats.report() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert get(base + "/healthz")[0] == 200
        clock.now += health.LOOP_STALE_SECONDS + 1
        status, body = get(base + "/healthz")
        assert status == 503 and body["stale"] == ["loop"]
    finally:
        release.set()
        runner.join(10)
        loop.close()
    assert "loop" not in beats.report()  # a stopped loop no longer counts


def test_unknown_heartbeats_are_ignored() -> None:
    beats = health.Heartbeats(Clock())
    beats.beat("lease")  # standalone: never expected
    assert beats.report() == {} and beats.stale() == []


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:8081/healthz", "https://127.0.0.1:8081/healthz", "http://127.0.0.1/healthz"],
)
def test_bad_endpoint_names_the_expected_form(url: str) -> None:
    with pytest.raises(ValueError, match="http://ADDR:PORT/healthz"):
        health.parse_endpoint(url)


class FailingLeases:
    async def read_lease(self, namespace: str, name: str) -> None:
        raise OSError("connection refused")


async def test_every_election_round_beats_even_a_failed_one() -> None:
    rounds: list[int] = []
    elector = LeaderElector(
        FailingLeases(),  # type: ignore[arg-type]
        "ns",
        "sipfleet",
        "a",
        retry_seconds=0.01,
        heartbeat=lambda: rounds.append(1),
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(elector.acquire(), 0.2)
    assert len(rounds) >= 3
