"""A per-key, single-flight cache with a short time to live.

With 1,000 SipConferences on one fleet, every pass used to read the fleet,
its Secret and its Pods and ask the main server for its whole state: work
that grows with the square of the conference count. The passes of one fleet
now share one fetch: concurrent callers await the same one, and a result
stays usable for ``ttl`` seconds.

A caller that has just changed something passes ``not_before`` (the
monotonic time of its change): a result fetched before that never satisfies
it, so no pass plans on a view older than its own last action.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    started: float
    task: asyncio.Future[T]


class SharedFetch(Generic[K, T]):
    """``get(key, fetch)``: the last result for ``key`` if young enough, else one new fetch.

    While a refresh is in flight, callers get the previous result if it is
    younger than ``2 * ttl`` and satisfies their ``not_before``, so passes do
    not stall on every refresh; a result is thus at most ``2 * ttl`` old.

    Exceptions of the ``keep_errors`` types are cached like results (for
    example "the fleet does not exist"); any other exception reaches every
    waiter of that fetch and is not cached.
    """

    def __init__(
        self,
        ttl: float,
        *,
        keep_errors: tuple[type[Exception], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._keep = keep_errors
        self._clock = clock
        self._latest: dict[K, _Entry[T]] = {}
        """The newest fetch per key, running or done."""
        self._done: dict[K, _Entry[T]] = {}
        """The newest successful (or kept-error) fetch per key."""

    def _good(self, entry: _Entry[T]) -> bool:
        if not entry.task.done() or entry.task.cancelled():
            return False
        exc = entry.task.exception()
        return exc is None or isinstance(exc, self._keep)

    def _on_done(self, key: K, entry: _Entry[T], _task: object) -> None:
        if self._good(entry):
            current = self._done.get(key)
            if current is None or current.started <= entry.started:
                self._done[key] = entry

    async def get(self, key: K, fetch: Callable[[], Awaitable[T]], *, not_before: float = 0.0) -> T:
        now = self._clock()
        done = self._done.get(key)
        if done is not None and done.started >= not_before and now - done.started <= self.ttl:
            return done.task.result()
        latest = self._latest.get(key)
        if latest is None or latest.started < not_before or latest.task.done():
            latest = _Entry(now, asyncio.ensure_future(fetch()))
            self._latest[key] = latest
            latest.task.add_done_callback(_consume)
            latest.task.add_done_callback(functools.partial(self._on_done, key, latest))
        if done is not None and done.started >= not_before and now - done.started <= 2 * self.ttl:
            return done.task.result()  # the refresh runs on without us
        # shield: one cancelled waiter (e.g. its timer stopped) must not cancel the others.
        return await asyncio.shield(latest.task)

    def forget(self, key: K) -> None:
        self._latest.pop(key, None)
        self._done.pop(key, None)


def _consume(task: asyncio.Future[Any]) -> None:
    """Mark an exception as retrieved, so a fetch nobody awaited any more logs nothing."""
    if not task.cancelled():
        task.exception()
