"""Members for the operator benchmarks: the demo's Crowd plus timed joins and probes.

A probe is one INVITE to the group at the main server whose answer is looked at,
not followed: a 302 is the event the reaction benchmark waits for. A 2xx makes
the prober a member (ACKed, kept), as any join would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sipfleet.demo.members import Crowd, Member


@dataclass(frozen=True)
class ProbeAnswer:
    status: int
    contact: str | None
    wall: float  # time.time() when the final answer arrived


class TimedCrowd(Crowd):
    """A Crowd that can time single joins and probe the group without following 302s."""

    async def start(self) -> None:
        """Start the stack; its UDP port may be taken for TCP by someone else: retry."""
        for attempt in range(5):
            try:
                await super().start()
                return
            except OSError:
                self.close()
                if attempt == 4:
                    raise

    async def join_timed(self, member: Member, timeout: float = 10.0) -> float | None:
        """Join ``member``; the wall time of its final 200 OK, or None if it failed."""
        loop = asyncio.get_running_loop()
        ok = await self.join(member, loop.time() + timeout)
        return time.time() if ok else None

    async def probe(self, member: Member) -> ProbeAnswer | None:
        """One INVITE to the group at the main server; None when it timed out."""
        invite, response = await self._invite(member, self._group_target())
        if response is None:
            return None
        wall = time.time()
        if 200 <= response.status < 300:
            self._adopt(member, invite, response)
            self.stats.joined += 1
        contact = response.contact.uri if response.contact else None
        return ProbeAnswer(response.status, contact, wall)

    async def join_all(self, count: int, prefix: str, parallel: int = 50) -> int:
        """Join ``count`` new members, ``parallel`` at a time; how many joined."""
        members = [self.add(f"{prefix}{i}") for i in range(count)]
        gate = asyncio.Semaphore(parallel)
        loop = asyncio.get_running_loop()

        async def one(member: Member) -> bool:
            async with gate:
                return await self.join(member, loop.time() + 30.0)

        results = await asyncio.gather(*(one(m) for m in members))
        return sum(results)
