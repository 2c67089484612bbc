"""Drivers for real SIP user agents: PJSIP (pjsua2), baresip and liblinphone.

Each driver starts the UA as its own process (a crash cannot take pytest down),
keeps every event it reports in `events`, and turns them into one vocabulary:

  {"event": "call", "state": "confirmed" | "disconnected" | "incoming" | ..., "reason": ..}
  {"event": "message", "shown": <what the UA displays as the sender>, "body": .., "from": ..}
  {"event": "transfer", "target": ..}   the UA accepted a REFER (pjsua2)
  {"event": "redirect", "target": ..}   the UA follows a 3xx (pjsua2)
plus each UA's own events (kept for failure messages).

All UAs run with their default codecs and SIP options: what the tests see is what a
user of that phone would see. No registrar: the phones dial the group URI directly.
Every process is killed at teardown (`close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

Event = dict[str, Any]
PhoneFactory = Callable[..., Awaitable["Agent"]]


@dataclass
class Agent:
    """One running user agent. Subclasses implement the UA-specific commands."""

    kind: ClassVar[str]
    name: str  # the user part of its AOR
    display: str  # its display name
    ip: str  # the address it binds to (127.0.0.1 or ::1)
    port: int  # its SIP port (UDP and/or TCP)
    workdir: Path
    transports: tuple[str, ...] = ("udp", "tcp")
    events: list[Event] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"[{self.ip}]" if ":" in self.ip else self.ip

    @property
    def log(self) -> Path:
        """Where the UA writes its log and SIP trace."""
        return self.workdir / f"{self.kind}-{self.name}.log"

    async def start(self) -> None:
        raise NotImplementedError

    async def dial(self, uri: str, *, late_offer: bool = False) -> None:
        """INVITE `uri` (late_offer: without SDP, RFC 3261 13.2.1)."""
        raise NotImplementedError

    async def send_message(self, uri: str, text: str) -> None:
        """Chat to `uri` the way this UA does (in the call or out of dialog)."""
        raise NotImplementedError

    async def hangup(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Ask the UA to quit; `close` kills it if it does not."""

    def _emit(self, event: Event) -> None:
        event["t"] = time.monotonic()
        self.events.append(event)

    def calls(self, state: str) -> list[Event]:
        return [e for e in self.events if e["event"] == "call" and e["state"] == state]

    def messages(self) -> list[Event]:
        return [e for e in self.events if e["event"] == "message"]

    async def wait_for(
        self, match: Callable[[Event], bool], what: str, timeout: float = 10.0, start: int = 0
    ) -> Event:
        """The first event from index `start` on that `match`es; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[start:]:
                if match(event):
                    return event
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.kind} {self.name}: no {what} in {timeout} s; events:\n"
                    + "\n".join(json.dumps(e) for e in self.events[-30:])
                )
            await asyncio.sleep(0.05)

    async def wait_call(self, state: str, timeout: float = 10.0, start: int = 0) -> Event:
        """The call reaching `state`; fails at once if it ends first."""

        def match(event: Event) -> bool:
            if (event["event"] == "call" and event["state"] == "disconnected" != state) or event[
                "event"
            ] in ("error", "exit"):
                pytest.fail(f"{self.kind} {self.name}: call ended before {state}: {event}")
            return event["event"] == "call" and event["state"] == state

        return await self.wait_for(match, f"call {state}", timeout, start)

    async def wait_message(self, body: str, timeout: float = 10.0) -> Event:
        return await self.wait_for(
            lambda e: e["event"] == "message" and body in e["body"], f"message {body!r}", timeout
        )

    def call_shown(self) -> str:
        """The phone's own words for its call's state now (what its user would see)."""
        raise NotImplementedError

    async def stays_up(self, seconds: float) -> None:
        """Fail if any call ends within `seconds` (the UA hung up or was hung up on)."""
        await asyncio.sleep(seconds)
        ended = self.calls("disconnected")
        assert not ended, f"{self.kind}: call ended: {ended}"

    def close(self) -> None:
        for task in self._readers:
            task.cancel()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
