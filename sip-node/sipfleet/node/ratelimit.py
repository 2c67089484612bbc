"""Per-source token buckets (in the spirit of Kamailio's pike), in a bounded table."""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    """`allow(source, now)` spends one token from the source's bucket.

    The table keeps at most `max_sources` buckets, evicting the least recently
    seen; an evicted source starts again with a full bucket, which only ever
    errs towards letting traffic through.
    """

    def __init__(self, rate: float, burst: float, max_sources: int = 10000) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_sources >= 1")
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            self._buckets[source] = [self.burst - 1.0, now]
            return True
        self._buckets.move_to_end(source)
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def __len__(self) -> int:
        return len(self._buckets)
