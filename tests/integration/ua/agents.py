"""Drivers for real SIP user agents: PJSIP (pjsua2), baresip and liblinphone.

Each driver starts the UA as its own process (a crash cannot take pytest down),
keeps every event it reports in `events`, and turns them into one vocabulary:

  {"event": "call", "state": "confirmed" | "disconnected" | "incoming" | ..., "reason": ..}
  {"event": "message", "shown": <what the UA displays as the sender>, "body": .., "from": ..}
  {"event": "transfer", "target": ..}   the UA accepted a REFER
  {"event": "redirect", "target": ..}   the UA followed a 3xx

All UAs run with their default codecs and SIP options: what the tests see is what a
user of that phone would see. No registrar: the phones dial the group URI directly.
Every process is killed at teardown (`close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

Event = dict[str, Any]
PhoneFactory = Callable[..., Awaitable["Agent"]]
CHILD = Path(__file__).with_name("pjsua_child.py")
BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
LINPHONE = shutil.which("linphone-daemon") or "/usr/bin/linphone-daemon"


def pjsua_missing() -> str:
    """Why pjsua2 cannot run here, or '' when it can."""
    try:
        import pjsua2  # noqa: F401
    except ImportError as exc:
        return f"pjsua2 not importable ({exc}): pip install pjsua2-python (test extra)"
    return ""


def binary_missing(path: str, package: str) -> str:
    """Why a UA binary cannot run here, or '' when it can."""
    if not Path(path).exists():
        return f"{path} not installed: apt-get install {package} (scripts/install-system-deps.sh)"
    return ""


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


@dataclass
class PjsuaAgent(Agent):
    """PJSIP 2.15 through the pjsua2 wheel, one child process (pjsua_child.py) per UA."""

    kind: ClassVar[str] = "pjsua2"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            "--ip", self.ip,
            "--port", str(self.port),
            "--transports", ",".join(self.transports),
            "--user", self.name,
            "--display", self.display,
            "--log", str(self.log),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=(self.workdir / f"pjsua-{self.name}.err").open("wb"),
        )  # fmt: skip
        self._readers.append(asyncio.create_task(self._read()))
        await self.wait_for(lambda e: e["event"] in ("ready", "exit"), "ready", 10)
        if not any(e["event"] == "ready" for e in self.events):
            pytest.fail(f"pjsua2 {self.name} did not start: {self.events}")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue  # PJSIP's own start-up lines
            event = json.loads(line)
            if event["event"] == "message":
                event["shown"] = event["from"]  # pjsua shows the From header as the sender
            self._emit(event)
        self._emit({"event": "exit"})

    def _send(self, **command: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    async def dial(self, uri: str, *, late_offer: bool = False) -> None:
        self._send(cmd="dial", uri=uri, late_offer=late_offer)

    async def send_message(self, uri: str, text: str) -> None:
        self._send(cmd="message", uri=uri, text=text, in_call=True)

    async def hangup(self) -> None:
        self._send(cmd="hangup")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._send(cmd="quit")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)


BARESIP_CONFIG = """\
sip_listen {listen}
module_path /usr/lib/baresip/modules
module g711.so
module g722.so
module opus.so
module aubridge.so
module_app account.so
module_app contact.so
module_app menu.so
module stdio.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl}
audio_player aubridge,nil
audio_source aubridge,nil
audio_alert aubridge,nil
net_interface {ip}
"""
# baresip's menu prints a received MESSAGE as `<From URI>: "<body>"`; nothing else shows
# the sender (ctrl_tcp 1.0 has no message event).
BARESIP_MESSAGE = re.compile(r'^(?P<peer>\S+): "(?P<body>.*)"$')
BARESIP_STATES = {
    "CALL_ESTABLISHED": "confirmed",
    "CALL_CLOSED": "disconnected",
    "CALL_INCOMING": "incoming",
    "CALL_RINGING": "early",
    "CALL_PROGRESS": "early",
}


@dataclass
class BaresipAgent(Agent):
    """baresip (Debian) with a config dir per UA, driven through its ctrl_tcp module.

    Audio goes through aubridge (no sound card). Chat is the contact module's /message,
    which sends an out-of-dialog MESSAGE to the current contact, written at start.
    """

    kind: ClassVar[str] = "baresip"
    ctrl_port: int = 0
    chat_uri: str = ""
    _writer: asyncio.StreamWriter | None = None
    _token: int = 0

    async def start(self) -> None:
        confdir = self.workdir / f"baresip-{self.name}"
        confdir.mkdir()
        (confdir / "config").write_text(
            BARESIP_CONFIG.format(
                listen=f"{self.host}:{self.port}", ctrl=self.ctrl_port, ip=self.ip
            )
        )
        transport = "" if "udp" in self.transports else ";transport=tcp"
        (confdir / "accounts").write_text(
            f'"{self.display}" <sip:{self.name}@{self.host}{transport}>;regint=0\n'
        )
        (confdir / "contacts").write_text(f'"group" <{self.chat_uri}>\n' if self.chat_uri else "")
        self.proc = await asyncio.create_subprocess_exec(
            BARESIP, "-f", str(confdir), "-s",
            stdin=asyncio.subprocess.PIPE,  # kept open: the stdio UI quits on EOF
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._readers.append(asyncio.create_task(self._read_console()))
        deadline = time.monotonic() + 10
        while self._writer is None:
            try:
                reader, self._writer = await asyncio.open_connection("127.0.0.1", self.ctrl_port)
            except OSError:
                if time.monotonic() > deadline or self.proc.returncode is not None:
                    pytest.fail(f"baresip {self.name} ctrl_tcp not up: {self.log.read_text()}")
                await asyncio.sleep(0.1)
        self._readers.append(asyncio.create_task(self._read_ctrl(reader)))

    async def _read_console(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log.open("w") as log:
            async for raw in self.proc.stdout:
                line = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode(errors="replace")).rstrip("\n")
                log.write(line + "\n")
                log.flush()
                found = BARESIP_MESSAGE.match(line.strip("\r"))
                if found:
                    self._emit(
                        {"event": "message", "shown": found["peer"], "from": found["peer"],
                         "body": found["body"]}
                    )  # fmt: skip
                elif "transfer" in line.lower() and line.startswith("call:"):
                    self._emit({"event": "transfer", "line": line})
        self._emit({"event": "exit"})

    async def _read_ctrl(self, reader: asyncio.StreamReader) -> None:
        while True:
            size = await reader.readuntil(b":")
            data = await reader.readexactly(int(size[:-1]) + 1)  # netstring: ..,
            message = json.loads(data[:-1])
            if message.get("event"):
                state = BARESIP_STATES.get(message.get("type", ""))
                if state:
                    message = {**message, "event": "call", "state": state,
                               "reason": message.get("param", "")}  # fmt: skip
                else:
                    message = {**message, "event": message.get("type", "").lower()}
            else:
                message = {**message, "event": "response"}
            self._emit(message)

    async def _command(self, command: str, params: str = "") -> Event:
        assert self._writer is not None
        self._token += 1
        token = f"{command}-{self._token}"
        data = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._writer.write(str(len(data)).encode() + b":" + data + b",")
        await self._writer.drain()
        return await self.wait_for(
            lambda e: e["event"] == "response" and e.get("token") == token, command, 5
        )

    async def dial(self, uri: str, *, late_offer: bool = False) -> None:
        if late_offer:
            pytest.skip("baresip 1.0 always sends an SDP offer in the INVITE")
        response = await self._command("dial", uri)
        assert response["ok"], response

    async def send_message(self, uri: str, text: str) -> None:
        assert uri == self.chat_uri, "baresip chats with its current contact only"
        response = await self._command("message", text)
        assert response["ok"], response

    async def hangup(self) -> None:
        await self._command("hangup")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None and self._writer is not None:
            with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
                await self._command("quit")
                await asyncio.wait_for(self.proc.wait(), 3)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        super().close()


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
        socket_path = Path("/tmp") / pipe
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

KINDS: dict[str, type[Agent]] = {
    "pjsua2": PjsuaAgent,
    "baresip": BaresipAgent,
    "linphone": LinphoneAgent,
}


def missing(kind: str) -> str:
    """Why UA `kind` cannot run on this machine, or '' when it can."""
    if kind == "pjsua2":
        return pjsua_missing()
    if kind == "baresip":
        return binary_missing(BARESIP, "baresip")
    return binary_missing(LINPHONE, "linphone-cli")
