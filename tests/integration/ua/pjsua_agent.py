"""PJSIP 2.15 as a phone: pjsua2 in a child process (pjsua_child.py) per UA."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from agent import Agent

CHILD = Path(__file__).with_name("pjsua_child.py")


def pjsua_missing() -> str:
    """Why pjsua2 cannot run here, or '' when it can."""
    if importlib.util.find_spec("pjsua2") is None:  # found, not loaded: PJSIP stays out of pytest
        return "pjsua2 not installed: pip install pjsua2-python (the test extra)"
    return ""


@dataclass
class PjsuaAgent(Agent):
    """PJSIP 2.15 through the pjsua2 wheel, one child process (pjsua_child.py) per UA."""

    kind: ClassVar[str] = "pjsua2"
    domain: str = ""  # the AOR's host; empty: the phone's own ip:port
    password: str = ""  # digest password; empty: none
    contact_host: str = ""  # a host name for its Contact instead of its address
    tls_dir: str = ""  # ca.crt, tls.crt, tls.key for the "tls" transport

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            "--ip", self.ip,
            "--port", str(self.port),
            "--transports", ",".join(self.transports),
            "--user", self.name,
            "--display", self.display,
            "--domain", self.domain,
            "--password", self.password,
            "--public", self.contact_host,
            "--tls-dir", self.tls_dir,
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

    def call_shown(self) -> str:
        """The media status of the last call (e.g. "held by remote" for a=inactive)."""
        media = [e for e in self.events if e["event"] == "media"]
        return ", ".join(media[-1]["media"]) if media else ""

    async def hangup(self) -> None:
        self._send(cmd="hangup")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._send(cmd="quit")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
