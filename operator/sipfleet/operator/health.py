"""Liveness on every replica: is the event loop turning, is the Lease loop alive?

kopf's own health endpoint exists only while kopf runs, i.e. on the acting
replica; a standby would fail a probe on it, and a leader whose event loop
hangs would answer nothing useful. This module serves ``GET <path>`` (the
path of ``--liveness``) from a small HTTP server in its own thread, on every
replica from process start, and answers from heartbeats:

- ``loop``: a task on the operator's event loop beats every second; a
  blocked or dead loop stops beating.
- ``lease``: each leader-election round beats (the standby's acquire loop
  and the leader's renew loop alike); a round stuck on the API server stops
  beating.

Because the server has its own thread it still answers when the loop hangs,
with 503 and the name of the stale heartbeat, so the kubelet restarts the
container instead of waiting for a probe timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LOOP_BEAT_SECONDS = 1.0
LOOP_STALE_SECONDS = 10.0


class Heartbeats:
    """Named heartbeats, each with the age after which it counts as stale.

    Written from the event loop, read from the server thread; a dict store
    of a float is atomic under the GIL, the lock only guards registration.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._max_age: dict[str, float] = {}
        self._lock = threading.Lock()

    def expect(self, name: str, max_age: float) -> None:
        """Start tracking ``name`` (fresh now); stale once silent for ``max_age`` seconds."""
        with self._lock:
            self._max_age[name] = max_age
            self._last[name] = self._clock()

    def forget(self, name: str) -> None:
        with self._lock:
            self._max_age.pop(name, None)
            self._last.pop(name, None)

    def beat(self, name: str) -> None:
        if name in self._max_age:
            self._last[name] = self._clock()

    def report(self) -> dict[str, float]:
        """Seconds since each heartbeat last beat."""
        now = self._clock()
        with self._lock:
            return {name: round(now - last, 3) for name, last in self._last.items()}

    def stale(self) -> list[str]:
        """Heartbeats silent for longer than their limit (empty: alive)."""
        ages = self.report()
        return sorted(n for n, age in ages.items() if age > self._max_age.get(n, float("inf")))


HEARTBEATS = Heartbeats()
"""The process's heartbeats (one operator per process)."""


async def beat_loop(beats: Heartbeats = HEARTBEATS, every: float = LOOP_BEAT_SECONDS) -> None:
    """Beat ``loop`` until cancelled; run it as a task on the operator's event loop."""
    beats.expect("loop", LOOP_STALE_SECONDS)
    try:
        while True:
            beats.beat("loop")
            await asyncio.sleep(every)
    finally:
        beats.forget("loop")


def _handler(path: str, beats: Heartbeats) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path != path:
                self._answer(404, {"error": f"not found; liveness is at {path}"})
                return
            stale = beats.stale()
            body = {"alive": not stale, "stale": stale, "ages": beats.report()}
            self._answer(503 if stale else 200, body)

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("liveness: " + format, *args)

    return Handler


def parse_endpoint(url: str) -> tuple[str, int, str]:
    """``http://ADDR:PORT/PATH`` -> (addr, port, path); ValueError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"liveness endpoint {url!r} must look like http://ADDR:PORT/healthz")
    return parts.hostname, parts.port, parts.path or "/healthz"


def serve(url: str, beats: Heartbeats = HEARTBEATS) -> ThreadingHTTPServer:
    """Serve liveness at ``url`` in a daemon thread; the server (``shutdown()`` stops it)."""
    addr, port, path = parse_endpoint(url)
    server = ThreadingHTTPServer((addr, port), _handler(path, beats))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="liveness", daemon=True).start()
    return server
