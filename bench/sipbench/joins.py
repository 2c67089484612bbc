"""Members joining a sip-node group from the receiver's socket (INVITE, 200, ACK).

Each member is its own dialog: From/Contact sip:<user>@<receiver host:port>, so
sip-node later delivers every group MESSAGE to the receiver. At most `window`
INVITEs are outstanding; an unanswered INVITE is retransmitted every 0.5 s and
the whole join is bounded by `timeout`.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sipbench import sipmsg

_RETRANSMIT_S = 0.5


@dataclass
class _Invite:
    user: str
    data: bytes
    sent_at: float


@dataclass
class Pending:
    """A batch of joins in progress; `step` advances it and returns the result when done."""

    target: tuple[str, int]
    group_uri: str
    local: tuple[str, int]
    window: int
    deadline: float
    queue: deque[str]
    body: bytes
    content_type: str
    outstanding: dict[str, _Invite] = field(default_factory=dict)
    joined: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, cmd: dict[str, Any], sock: socket.socket) -> Pending:
        host, port = sock.getsockname()
        pending = cls(
            target=(cmd["host"], int(cmd["port"])),
            group_uri=cmd["group_uri"],
            local=(host, port),
            window=int(cmd.get("window", 64)),
            deadline=time.monotonic() + float(cmd.get("timeout", 60.0)),
            queue=deque(cmd["users"]),
            body=str(cmd.get("body", "")).encode(),
            content_type=str(cmd.get("content_type", "application/sdp")),
        )
        pending.step(sock)
        return pending

    def _call_id(self, user: str) -> str:
        # Unique per batch: the same member joining a second group is a new dialog.
        return f"join-{id(self):x}-{user}@{self.local[0]}"

    def _request(self, method: str, user: str, **extra: Any) -> bytes:
        """One of the member's join dialog requests (INVITE, then its ACK)."""
        return sipmsg.request(
            method,
            self.group_uri,
            local=self.local,
            from_uri=f"sip:{user}@{self.local[0]}:{self.local[1]}",
            to_uri=self.group_uri,
            call_id=self._call_id(user),
            from_tag=f"t-{user}",
            **extra,
        )

    def _invite(self, user: str) -> bytes:
        contact = f"sip:{user}@{self.local[0]}:{self.local[1]}"
        return self._request(
            "INVITE", user, contact=contact, body=self.body, content_type=self.content_type
        )

    def on_response(self, data: bytes, sock: socket.socket, addr: tuple[str, int]) -> None:
        call_id = (sipmsg.header(data, b"call-id") or b"").decode()
        user = call_id.rsplit("@", 1)[0].split("-", 2)[-1]
        code = sipmsg.status_code(data) or 0
        if code < 200 or user not in self.outstanding:
            return
        del self.outstanding[user]
        if code < 300:
            self.joined += 1
            self._ack(data, user, sock)
        else:
            self.failed[str(code)] = self.failed.get(str(code), 0) + 1

    def _ack(self, response: bytes, user: str, sock: socket.socket) -> None:
        to = (sipmsg.header(response, b"to") or b"").decode()
        to_tag = to.split(";tag=", 1)[1].split(";", 1)[0] if ";tag=" in to else ""
        sock.sendto(self._request("ACK", user, to_tag=to_tag), self.target)

    def step(self, sock: socket.socket) -> dict[str, Any] | None:
        now = time.monotonic()
        for invite in self.outstanding.values():
            if now - invite.sent_at > _RETRANSMIT_S:
                sock.sendto(invite.data, self.target)
                invite.sent_at = now
        while self.queue and len(self.outstanding) < self.window:
            user = self.queue.popleft()
            data = self._invite(user)
            self.outstanding[user] = _Invite(user, data, now)
            sock.sendto(data, self.target)
        if (self.queue or self.outstanding) and now < self.deadline:
            return None
        return {
            "joined": self.joined,
            "failed": self.failed,
            "unanswered": len(self.outstanding) + len(self.queue),
            "seconds": round(now - self.started, 3),
        }
