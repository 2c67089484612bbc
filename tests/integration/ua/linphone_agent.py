"""liblinphone 5.1 as a phone: Debian's linphone-daemon on a unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
from agent import Agent

LINPHONE = shutil.which("linphone-daemon") or "/usr/bin/linphone-daemon"

LINPHONE_CONFIG = """\
[sip]
sip_port={udp}
sip_tcp_port={tcp}
contact="{display}" <sip:{name}@{host}>
[storage]
uri={db}
"""


@dataclass
class LinphoneAgent(Agent):
    """liblinphone 5.1 through Debian's linphone-daemon, one unix socket per UA.

    Daemon events are polled with `pop-event`. The daemon dies (SIGSEGV in soci) on
    `message` when it has no writable chat database, so each UA gets its own.
    """

    kind: ClassVar[str] = "linphone"
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _socket: Path | None = None

    async def start(self) -> None:
        home = self.workdir / f"linphone-{self.name}"
        (home / ".local/share/linphone").mkdir(parents=True)
        config = home / "linphonerc"
        udp = self.port if "udp" in self.transports else -1
        tcp = self.port if "tcp" in self.transports else -1
        config.write_text(
            LINPHONE_CONFIG.format(
                udp=udp, tcp=tcp, display=self.display, name=self.name, host=self.host,
                db=home / "chat.db",
            )
        )  # fmt: skip
        pipe = f"sipfleet-ua-{self.name}-{self.port}"
        socket_path = self._socket = Path("/tmp") / pipe  # the daemon puts it in /tmp
        socket_path.unlink(missing_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            LINPHONE, "--pipe", pipe, "--config", str(config), "--log", str(self.log),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=(self.workdir / f"linphone-{self.name}.out").open("wb"),
            stderr=asyncio.subprocess.STDOUT,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(str(socket_path))
            except OSError:
                if time.monotonic() > deadline or self.proc.returncode is not None:
                    pytest.fail(f"linphone-daemon {self.name} did not open {socket_path}")
                await asyncio.sleep(0.1)
        self._readers.append(asyncio.create_task(self._poll()))

    async def command(self, line: str) -> dict[str, str]:
        """Send one daemon command; its response as {"Status": .., key: value}."""
        assert self._reader is not None and self._writer is not None
        async with self._lock:
            self._writer.write(line.encode() + b"\n")
            await self._writer.drain()
            text = (await asyncio.wait_for(self._reader.read(65536), 5)).decode(errors="replace")
            while True:  # a response is one write; wait briefly for a split one
                try:
                    more = await asyncio.wait_for(self._reader.read(65536), 0.05)
                except TimeoutError:
                    break
                if not more:
                    break
                text += more.decode(errors="replace")
        fields: dict[str, str] = {}
        for row in text.splitlines():
            key, sep, value = row.partition(": ")
            if sep and key not in fields:
                fields[key] = value
        return fields

    async def _poll(self) -> None:
        while True:
            event = await self.command("pop-event")
            kind = event.get("Event-type")
            if kind is None:
                await asyncio.sleep(0.1)
                continue
            if kind == "call-state-changed":
                state = LINPHONE_STATES.get(event.get("Event", ""), event.get("Event", ""))
                self._emit({"event": "call", "state": state, "raw": event, "reason": ""})
            elif kind == "message-received":
                # The daemon prints the sender's address and the text in quotes.
                body = event.get("Content", "")
                body = body[1:-1] if len(body) >= 2 and body[0] == body[-1] == '"' else body
                self._emit(
                    {"event": "message", "shown": event.get("From", ""),
                     "from": event.get("From", ""), "body": body, "raw": event}
                )  # fmt: skip
            else:
                self._emit({"event": kind, "raw": event})

    async def dial(self, uri: str, *, late_offer: bool = False) -> None:
        if late_offer:
            pytest.skip("linphone-daemon has no command for an INVITE without SDP")
        response = await self.command(f"call {uri}")
        assert response.get("Status") == "Ok", response

    async def send_message(self, uri: str, text: str) -> None:
        response = await self.command(f"message {uri} {text}")
        assert response.get("Status") == "Ok", response

    def call_shown(self) -> str:
        """The last LinphoneCallState (e.g. LinphoneCallPausedByRemote for a=inactive)."""
        calls = [e for e in self.events if e["event"] == "call"]
        return str(calls[-1]["raw"].get("Event", "")) if calls else ""

    async def hangup(self) -> None:
        await self.command("terminate")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None and self._writer is not None:
            for task in self._readers:
                task.cancel()
            with contextlib.suppress(OSError, TimeoutError):
                await self.command("quit")
                await asyncio.wait_for(self.proc.wait(), 5)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        super().close()
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)


LINPHONE_STATES = {
    "LinphoneCallOutgoingInit": "calling",
    "LinphoneCallOutgoingProgress": "calling",
    "LinphoneCallOutgoingRinging": "early",
    "LinphoneCallIncomingReceived": "incoming",
    "LinphoneCallConnected": "connecting",
    "LinphoneCallStreamsRunning": "confirmed",
    "LinphoneCallPausedByRemote": "confirmed",
    "LinphoneCallError": "disconnected",
    "LinphoneCallEnd": "disconnected",
    "LinphoneCallReleased": "released",
}
