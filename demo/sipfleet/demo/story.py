"""The story the demo plays, in four timed acts, and the pure arithmetic behind it.

Members join in a ramp, a few chat, they leave in a ramp (in a shuffled
order, so servers empty unevenly and the operator moves the rest with
REFER), and the demo waits for the fleet to scale back in.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import kubernetes
from sipfleet.demo import manifests
from sipfleet.demo.kubeside import DemoError
from sipfleet.demo.members import Crowd, CrowdStats, Member
from sipfleet.demo.observe import Observer, Snapshot
from sipfleet.demo.view import View
from sipfleet.devcluster.cluster import host_address_towards

MIN_DURATION = 45.0
TICK = 1.0
CHATS = 3
SHUFFLE_SEED = 3261
T = TypeVar("T")


@dataclass(frozen=True)
class Acts:
    """Lengths (seconds) of the acts; ``settle`` is the most the scale-in may take."""

    join: float
    chat: float
    leave: float
    settle: float

    @property
    def total(self) -> float:
        return self.join + self.chat + self.leave + self.settle


def acts_for(duration: float) -> Acts:
    """Split ``duration`` into the acts: a quarter joining, a tenth chatting, a quarter
    leaving, the rest (at most) for the fleet to scale back in."""
    if duration < MIN_DURATION:
        raise ValueError(
            f"--duration {duration:g} is too short: the fleet needs at least "
            f"{MIN_DURATION:g} seconds to scale out and back in"
        )
    return Acts(
        join=0.25 * duration,
        chat=0.10 * duration,
        leave=0.25 * duration,
        settle=0.40 * duration,
    )


def ramp(count: int, length: float) -> list[float]:
    """Offsets (seconds) at which ``count`` steps start, evenly over ``length``."""
    if count <= 0:
        return []
    return [length * i / count for i in range(count)]


def scaled_in(snap: Snapshot) -> bool:
    """No node Pods beyond the fleet's minimum are left, and nobody is on the group."""
    nodes = sum(1 for s in snap.servers if s.role == "node")
    return nodes <= manifests.MIN_NODES and sum(snap.hosting().values()) == 0


def spread_speakers(members: list[Member], count: int) -> list[Member]:
    """Up to ``count`` joined members, on different servers where possible."""
    by_shard: dict[str | None, Member] = {}
    for member in members:
        if member.shard is not None:
            by_shard.setdefault(member.shard, member)
    speakers = list(by_shard.values())[:count]
    rest = [m for m in members if m.shard is not None and m not in speakers]
    return speakers + rest[: count - len(speakers)]


@dataclass
class Show:
    """One run of the story against a running fleet."""

    observer: Observer
    view: View
    acts: Acts
    members: int
    operator_alive: Callable[[], bool]
    chats: list[tuple[str, int, int]] = field(default_factory=list)
    stats: CrowdStats = field(default_factory=CrowdStats)
    act: str = "starting"
    scaled_in_at: float | None = None
    last: Snapshot | None = None
    _t0: float = 0.0

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    async def run(self) -> None:
        main_ip = await self._wait_for("the main server to be Ready", self.observer.main_ip, 90)
        await self._wait_for(
            "the operator to create the group on the main server", self._group_ready, 60
        )
        crowd = Crowd(
            manifests.GROUP,
            (main_ip, 5060),
            host=host_address_towards(main_ip),
            on_event=self._note,
        )
        await crowd.start()
        self.stats = crowd.stats
        self._t0 = asyncio.get_running_loop().time()
        play = asyncio.create_task(self._play(crowd))
        ticker = asyncio.create_task(self._tick(crowd))
        try:
            await asyncio.wait({play, ticker}, return_when=asyncio.FIRST_COMPLETED)
            if ticker.done():
                ticker.result()  # the observer failed (e.g. the operator exited): raise it
            play.result()
        finally:
            for task in (play, ticker):
                task.cancel()
            await asyncio.gather(play, ticker, return_exceptions=True)
            crowd.close()

    async def _play(self, crowd: Crowd) -> None:
        acts = self.acts
        self._begin(f"{self.members} members joining", "joining")
        people = [crowd.add(f"member{i:02d}") for i in range(self.members)]
        join_deadline = acts.join + acts.chat
        joins = [
            asyncio.create_task(self._at(offset, crowd.join(m, self._t0 + join_deadline)))
            for m, offset in zip(people, ramp(len(people), acts.join), strict=True)
        ]
        await asyncio.wait(joins, timeout=join_deadline)
        self._begin("chatting", "chat")
        for speaker in spread_speakers(crowd.joined(), CHATS):
            await self._chat(crowd, speaker, acts.chat / CHATS)
        self._begin("members leaving", "leaving")
        order = crowd.joined()
        random.Random(SHUFFLE_SEED).shuffle(order)
        start = self.now()
        for member, offset in zip(order, ramp(len(order), acts.leave), strict=True):
            await self._sleep_until(start + offset)
            await crowd.leave(member)
        await crowd.settle(5.0)
        for member in crowd.joined():  # moved while the ramp ran past it
            await crowd.leave(member)
        self._begin("scaling back in", "scaling in")
        end = acts.total
        while self.now() < end and not (self.last and scaled_in(self.last)):
            await asyncio.sleep(TICK)
        if self.last and scaled_in(self.last):
            self.scaled_in_at = self.last.t
            self._note("the fleet is back to the main server alone")
        else:
            self._note("time is up before the fleet scaled all the way in")
        await asyncio.sleep(2 * TICK)  # a last sample or two for the plot

    def _begin(self, act: str, short: str) -> None:
        """Start an act: shown in the live view, shaded in the plot."""
        self.act = act
        self.observer.timeline.begin(self.now(), short)

    async def _chat(self, crowd: Crowd, speaker: Member, spacing: float) -> None:
        body = f"hello from {speaker.name}"
        expected = len(crowd.joined()) - 1
        took = await crowd.chat(speaker, body)
        await asyncio.sleep(spacing)
        got = crowd.stats.deliveries(body)
        self._note(
            f"{speaker.name} said {body!r}: "
            + (f"reached {got} of {expected} members" if took else "its server refused it")
        )
        self.chats.append((body, got, expected))

    async def _at(self, offset: float, step: Awaitable[T]) -> T:
        await self._sleep_until(offset)
        return await step

    async def _sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))

    async def _group_ready(self) -> bool:
        status = await self.observer.conference()
        return bool(status.get("shards")) and await self.observer.token() is not None

    async def _wait_for(
        self, what: str, probe: Callable[[], Awaitable[T | None]], timeout: float
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._check_operator()
            value = await probe()
            if value:
                return value
            if loop.time() > deadline:
                raise DemoError(f"timed out after {timeout:g}s waiting for {what}")
            await asyncio.sleep(0.5)

    def _check_operator(self) -> None:
        if not self.operator_alive():
            raise DemoError("the operator exited; its log is in the state dir (demo/operator.log)")

    async def _tick(self, crowd: Crowd) -> None:
        reported = False
        while True:
            self._check_operator()
            started = self.now()
            try:
                snap = await self.observer.poll(started)
            except (kubernetes.client.ApiException, aiohttp.ClientError, OSError) as exc:
                if not reported:
                    self._note(f"could not observe the fleet this tick: {exc}")
                    reported = True
            else:
                self.last = snap
                for mark in snap.events:
                    self._note(f"operator: {mark.kind}: {mark.message}")
                self.view.update(snap, self.act, crowd.stats, self.observer.timeline.summary())
            await asyncio.sleep(max(0.1, TICK - (self.now() - started)))

    def _note(self, text: str) -> None:
        self.view.note(self.now(), text)
