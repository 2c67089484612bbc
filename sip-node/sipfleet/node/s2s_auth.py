"""Server-to-server authentication: HMAC-SHA256 with the shared token, timestamp and nonce.

The header value is `ts=<unix seconds>;nonce=<hex>;mac=<hex>`; the MAC covers
the timestamp, nonce and the caller's canonical parts of the message (see
s2s.signed_parts). A receiver
accepts a timestamp within `window` seconds and each nonce once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Iterable

HEADER = "X-Sipfleet-Auth"


class AuthError(Exception):
    """Why a server-to-server request was refused."""


def _mac(key: bytes, ts: str, nonce: str, parts: Iterable[bytes]) -> str:
    mac = hmac.new(key, f"{ts}\n{nonce}\n".encode(), hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    return mac.hexdigest()


def sign(key: bytes, parts: Iterable[bytes], now: float, nonce: str | None = None) -> str:
    ts = str(int(now))
    nonce = nonce or secrets.token_hex(12)
    return f"ts={ts};nonce={nonce};mac={_mac(key, ts, nonce, parts)}"


class Verifier:
    def __init__(self, key: bytes, window: float = 30.0, max_nonces: int = 200_000) -> None:
        self.key, self.window, self.max_nonces = key, window, max_nonces
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, header: str | None, parts: Iterable[bytes], now: float) -> None:
        """Raise AuthError unless `header` authenticates `parts` and is fresh."""
        if not header:
            raise AuthError(f"missing {HEADER}")
        fields = dict(p.split("=", 1) for p in header.split(";") if "=" in p)
        ts, nonce, mac = fields.get("ts", ""), fields.get("nonce", ""), fields.get("mac", "")
        if not ts.isdigit() or not nonce or not mac:
            raise AuthError(f"malformed {HEADER}")
        if abs(now - int(ts)) > self.window:
            raise AuthError("stale timestamp")
        if not hmac.compare_digest(mac, _mac(self.key, ts, nonce, parts)):
            raise AuthError("bad signature")
        self._expire(now)
        if nonce in self._seen:
            raise AuthError("replayed nonce")
        self._seen[nonce] = now
        if len(self._seen) > self.max_nonces:
            self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._seen:
            nonce, seen = next(iter(self._seen.items()))
            if now - seen <= 2 * self.window:
                break
            del self._seen[nonce]
