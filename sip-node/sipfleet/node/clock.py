"""Drives a pure core's timers from asyncio: one loop timer armed at its next deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class CoreClock:
    """Calls `fire(now)` when `next_deadline()` (loop time, seconds) has come; call
    `rearm()` after every call into the core that may have armed a timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        next_deadline: Callable[[], float | None],
        fire: Callable[[float], None],
    ) -> None:
        self._loop, self._next_deadline, self._fire_cb = loop, next_deadline, fire
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")

    def rearm(self) -> None:
        deadline = self._next_deadline()
        if deadline is None or deadline >= self._armed_at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = deadline
        self._handle = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle, self._armed_at = None, float("inf")
        self._fire_cb(self._loop.time())
        self.rearm()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
