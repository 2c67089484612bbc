"""Stateless nonces with an expiry, and a bounded replay tracker (RFC 7616 3.3, 5.5).

A nonce is `<issued ms, hex>.<random, hex>.<HMAC-SHA256 tag, hex>`: the tag
covers the realm, the time it was issued and the random part, so a server
recognises its own nonces without storing them and knows their age. Replays
are caught by `NonceCounts`, which remembers, per nonce in use, the nonce-counts
(`nc`) already accepted; it is bounded, and a nonce whose record was evicted is
treated as stale (the client is challenged again with stale=true).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

_TAG_HEX = 32
WINDOW = 64
"""How far below the highest nc seen a late (reordered) nc is still accepted, once."""


class NonceState(Enum):
    """What `NonceIssuer.check` found out about a nonce."""

    VALID = "valid"
    STALE = "stale"
    """Issued by us but expired: answer 401 with stale=true (RFC 7616 3.3)."""
    INVALID = "invalid"
    """Not one of ours (forged, another server's, or from before a restart)."""


@dataclass(frozen=True)
class NonceIssuer:
    """Issues and checks HMAC-signed nonces; `lifetime` is in seconds."""

    key: bytes
    lifetime: float = 300.0

    @classmethod
    def with_random_key(cls, lifetime: float = 300.0) -> NonceIssuer:
        """An issuer whose key lives as long as the process (32 random bytes)."""
        return cls(secrets.token_bytes(32), lifetime)

    def _tag(self, realm: str, issued: str, rand: str) -> str:
        text = f"{realm}\n{issued}\n{rand}".encode()
        return hmac.new(self.key, text, hashlib.sha256).hexdigest()[:_TAG_HEX]

    def issue(self, realm: str, now: float) -> str:
        """A fresh nonce for `realm` at `now` (seconds since the epoch)."""
        issued = format(int(now * 1000), "x")
        rand = secrets.token_hex(8)
        return f"{issued}.{rand}.{self._tag(realm, issued, rand)}"

    def issued_at(self, nonce: str) -> float:
        """When a nonce that passed `check` was issued, in seconds."""
        return int(nonce.split(".", 1)[0], 16) / 1000

    def check(self, realm: str, nonce: str, now: float) -> NonceState:
        """Whether `nonce` is ours for `realm` and younger than `lifetime` seconds."""
        parts = nonce.split(".")
        if len(parts) != 3 or len(parts[0]) > 16 or len(parts[1]) != 16:
            return NonceState.INVALID
        issued, rand, tag = parts
        if not hmac.compare_digest(tag.encode(), self._tag(realm, issued, rand).encode()):
            return NonceState.INVALID
        try:
            age = now - int(issued, 16) / 1000
        except ValueError:
            return NonceState.INVALID
        if age > self.lifetime or age < -self.lifetime:
            return NonceState.STALE
        return NonceState.VALID


class NonceCounts:
    """Remembers the `nc` values accepted per nonce, for at most `max_nonces` nonces.

    `accept(nonce, nc, issued, now)` is True the first time a (nonce, nc) pair
    is presented, if nc is above the highest seen or within WINDOW below it;
    False for a replay (RFC 7616 5.5: an nc seen before means a replay) or when
    the nonce's record may have been evicted. Records older than `lifetime`
    seconds are dropped; when full, the oldest is evicted and every nonce issued
    up to it is then refused (`floor`), so eviction never reopens a replay.
    """

    def __init__(self, lifetime: float = 300.0, max_nonces: int = 50_000) -> None:
        if max_nonces < 1 or lifetime <= 0:
            raise ValueError("max_nonces must be >= 1 and lifetime > 0")
        self.lifetime, self.max_nonces = lifetime, max_nonces
        self._seen: OrderedDict[str, tuple[float, int, int]] = OrderedDict()
        self.floor = float("-inf")
        """Nonces issued at or before this time (seconds) without a record are refused."""

    def accept(self, nonce: str, nc: int, issued: float, now: float) -> bool:
        """Record (nonce, nc); False if it was seen before or cannot be vouched for."""
        self._expire(now)
        record = self._seen.get(nonce)
        if record is None:
            if issued <= self.floor or nc < 1:
                return False
            self._seen[nonce] = (issued, nc, 1)
            if len(self._seen) > self.max_nonces:
                _, (evicted_issued, _, _) = self._seen.popitem(last=False)
                self.floor = max(self.floor, evicted_issued)
            return True
        _, highest, bits = record
        if nc > highest:
            shift = nc - highest
            bits = ((bits << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self._seen[nonce] = (issued, nc, bits)
            return True
        offset = highest - nc
        if offset >= WINDOW or nc < 1 or bits & (1 << offset):
            return False
        self._seen[nonce] = (issued, highest, bits | (1 << offset))
        return True

    def _expire(self, now: float) -> None:
        # Records are kept in first-use order, close to issue order; stop at the first young one.
        while self._seen:
            nonce, (issued, _, _) = next(iter(self._seen.items()))
            if now - issued <= self.lifetime:
                break
            del self._seen[nonce]

    def __len__(self) -> int:
        return len(self._seen)
