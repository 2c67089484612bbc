"""The 1,000 group members of the fan-out test, as one UDP process.

One socket stands for every member (members differ by user part; imc and
sip-node address them all at this host:port). It answers each request with
200 at once and records, per distinct Call-ID of a MESSAGE, the
CLOCK_MONOTONIC time right after its 200 was sent. CLOCK_MONOTONIC is
system-wide on Linux, so the parent can compare it with its own send time.

Why not sipp as the members: sipp's own log clocks have millisecond resolution
and per-member timestamps would need -trace_msg on every delivery; this loop
costs a few microseconds per message (the run prints its measured capacity, so
a reader can see it is not the bottleneck).

Control: JSON lines on stdin, JSON lines on stdout.
  {"cmd": "arm"}                          forget deliveries so far
  {"cmd": "wait", "count": N, "timeout": S}
      -> {"count": n, "first_ns": t, "last_ns": t}  once N deliveries or S seconds
  {"cmd": "join", ...}                     see sipbench.joins
  {"cmd": "quit"}
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import sys
import time
from typing import Any

from sipbench import joins, sipmsg

_SO_RCVBUFFORCE = 33


def open_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 16 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class Members:
    """Answers requests and keeps the delivery log."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.delivered: dict[bytes, int] = {}
        self.first_ns = 0
        self.last_ns = 0
        self.pending: joins.Pending | None = None

    def arm(self) -> None:
        self.delivered.clear()
        self.first_ns = self.last_ns = 0

    def drain(self) -> None:
        """Handle every datagram queued on the socket."""
        sock = self.sock
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            if data.startswith(b"SIP/2.0 "):
                if self.pending is not None:
                    self.pending.on_response(data, sock, addr)
                continue
            sock.sendto(sipmsg.response(data, 200, b"OK", to_tag=b"m"), addr)
            if data.startswith(b"MESSAGE "):
                now = time.monotonic_ns()
                call_id = sipmsg.header(data, b"call-id") or b""
                if call_id not in self.delivered:
                    self.delivered[call_id] = now
                    if not self.first_ns:
                        self.first_ns = now
                    self.last_ns = now


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve(host: str, port: int) -> None:
    members = Members(open_socket(host, port))
    sel = selectors.DefaultSelector()
    sel.register(members.sock, selectors.EVENT_READ, "sip")
    sel.register(sys.stdin, selectors.EVENT_READ, "ctl")
    _reply({"ready": port, "pid": os.getpid()})
    waiting: tuple[int, float] | None = None  # (count, deadline)
    while True:
        timeout = 0.05 if (waiting or members.pending) else 1.0
        for key, _ in sel.select(timeout):
            if key.data == "sip":
                members.drain()
                continue
            line = sys.stdin.readline()
            if not line:
                return
            cmd = json.loads(line)
            if cmd["cmd"] == "arm":
                members.arm()
                _reply({"armed": True})
            elif cmd["cmd"] == "wait":
                waiting = (int(cmd["count"]), time.monotonic() + float(cmd["timeout"]))
            elif cmd["cmd"] == "join":
                members.pending = joins.Pending.start(cmd, members.sock)
            elif cmd["cmd"] == "quit":
                return
        if waiting and (len(members.delivered) >= waiting[0] or time.monotonic() > waiting[1]):
            _reply(
                {
                    "count": len(members.delivered),
                    "first_ns": members.first_ns,
                    "last_ns": members.last_ns,
                }
            )
            waiting = None
        if members.pending is not None:
            result = members.pending.step(members.sock)
            if result is not None:
                members.pending = None
                _reply(result)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        serve(host, port)


if __name__ == "__main__":
    main()
