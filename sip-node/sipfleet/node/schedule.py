"""Timers for the pure group logic, in virtual time (the way sip/transaction.py keeps its own).

A `Schedule` maps keys to deadlines (seconds on the caller's monotonic clock).
The logic arms and cancels keys; its shell calls `due(now)` when
`next_deadline()` has passed and hands the keys back to the logic.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Schedule(Generic[K]):
    """At most one deadline per key; re-arming a key moves it."""

    def __init__(self) -> None:
        self._when: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()

    def arm(self, key: K, when: float) -> None:
        """Fire `key` at `when` (replacing an earlier deadline of the same key)."""
        self._when[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))

    def cancel(self, key: K) -> None:
        """Forget `key` (nothing happens if it is not armed)."""
        self._when.pop(key, None)

    def armed(self, key: K) -> bool:
        return key in self._when

    def next_deadline(self) -> float | None:
        """When `due` next returns something, or None."""
        heap = self._heap
        while heap:
            when, _, key = heap[0]
            if self._when.get(key) == when:
                return when
            heapq.heappop(heap)  # cancelled or moved
        return None

    def due(self, now: float) -> list[K]:
        """The keys whose deadline is at or before `now`, in deadline order; they
        are disarmed."""
        out: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if self._when.get(key) == when:
                del self._when[key]
                out.append(key)
        return out
