"""baresip 1.0 as a phone: its own process and config dir, driven over ctrl_tcp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from agent import Agent, Event

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"

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
    tls_dir: str = ""  # ca.crt, tls.crt, tls.key: SIP over TLS (sips:) verified by the CA
    _writer: asyncio.StreamWriter | None = None
    _token: int = 0

    async def start(self) -> None:
        confdir = self.workdir / f"baresip-{self.name}"
        confdir.mkdir()
        config = BARESIP_CONFIG.format(
            listen=f"{self.host}:{self.port}", ctrl=self.ctrl_port, ip=self.ip
        )
        if self.tls_dir:  # its TLS listener's certificate and key in one file, and the CA
            tls = Path(self.tls_dir)
            pem = confdir / "cert.pem"
            pem.write_text((tls / "tls.crt").read_text() + (tls / "tls.key").read_text())
            config += f"sip_certificate {pem}\nsip_cafile {tls / 'ca.crt'}\n"
        (confdir / "config").write_text(config)
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

    def call_shown(self) -> str:
        """The last call event baresip reported (e.g. CALL_ESTABLISHED)."""
        calls = [e for e in self.events if e["event"] == "call"]
        return str(calls[-1]["type"]) if calls else ""

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
