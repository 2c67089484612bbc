"""Lockout of a source after repeated authentication failures (like fail2ban / Kamailio pike).

A source (an IP address) that fails `max_failures` times within `window`
seconds is locked for `duration` seconds: its requests are dropped unanswered
meanwhile. The table keeps at most `max_sources` sources, evicting the least
recently seen unlocked one first; when every entry is locked the oldest goes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Entry:
    first: float
    failures: int
    locked_until: float


class Lockout:
    """Counts failures per source; `locked(source, now)` says whether to drop its requests."""

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 60.0,
        duration: float = 300.0,
        max_sources: int = 10_000,
    ) -> None:
        if max_failures < 1 or window <= 0 or duration <= 0 or max_sources < 1:
            raise ValueError("max_failures, window, duration and max_sources must be positive")
        self.max_failures, self.window, self.duration = max_failures, window, duration
        self.max_sources = max_sources
        self._table: OrderedDict[str, _Entry] = OrderedDict()

    def locked(self, source: str, now: float) -> bool:
        """Whether `source` is locked out at `now` (seconds)."""
        entry = self._table.get(source)
        return entry is not None and entry.locked_until > now

    def fail(self, source: str, now: float) -> bool:
        """Count one failure of `source`; True when this failure locks it out."""
        entry = self._table.get(source)
        if entry is None or now - entry.first > self.window:
            if entry is None and len(self._table) >= self.max_sources:
                self._evict(now)
            locked_until = entry.locked_until if entry else 0.0
            entry = _Entry(first=now, failures=0, locked_until=locked_until)
            self._table[source] = entry
        self._table.move_to_end(source)
        entry.failures += 1
        if entry.failures >= self.max_failures and entry.locked_until <= now:
            entry.locked_until = now + self.duration
            entry.first, entry.failures = now, 0
            return True
        return False

    def succeed(self, source: str, now: float) -> None:
        """Forget the failures of `source` after it authenticated (unless it is locked)."""
        entry = self._table.get(source)
        if entry is not None and entry.locked_until <= now:
            del self._table[source]

    def _evict(self, now: float) -> None:
        for source, entry in self._table.items():
            if entry.locked_until <= now:
                del self._table[source]
                return
        self._table.popitem(last=False)

    def __len__(self) -> int:
        return len(self._table)
