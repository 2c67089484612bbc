"""Helpers for the sip-node integration tests: sipfleet-node processes and sipp peers.

Servers listen on 127.0.0.x with free ports; sipp runs from 127.0.0.1. Every
process is bounded in time and killed at teardown.
"""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from sipfleet.node.admin_client import AdminClient
from sipfleet.node.admin_types import NodeState

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = Path(__file__).parent / "scenarios"
NODE_BIN = Path(sys.executable).parent / "sipfleet-node"
TOKEN = "integration-test-token"
RFC4475 = Path(__file__).resolve().parents[1] / "data" / "rfc4475"


def free_ports(host: str, count: int) -> list[int]:
    """`count` distinct ports, each free for both TCP and UDP on `host`.

    Every socket stays bound until all ports are picked: picking them one at a
    time once handed a node the same SIP and admin port.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        for _ in range(50 * count):
            if len(ports) == count:
                return ports
            tcp = socket.socket(family, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(family, socket.SOCK_DGRAM)
            held.append(udp)
            try:
                udp.bind((host, port))
            except OSError:
                continue
            ports.append(int(port))
    finally:
        for sock in held:
            sock.close()
    if len(ports) == count:
        return ports
    raise RuntimeError(f"no {count} free ports on {host}")


def free_port(host: str) -> int:
    """A port free for both TCP and UDP on `host`."""
    return free_ports(host, 1)[0]


MEDIA_PORTS = 4
"""UDP ports sipp's -mp N binds from N: audio RTP at N and video RTP at N+2 (plus their
RTCP ports); a taken N+2 fails the run ("Unable to bind video RTP socket")."""


def free_media_base(host: str, avoid: int = 0) -> int:
    """A port N with N .. N+MEDIA_PORTS-1 all free for UDP on `host` and none of them
    `avoid` (the SIP port sipp binds first), for sipp's -mp."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        held: list[socket.socket] = []
        try:
            probe = socket.socket(family, socket.SOCK_DGRAM)
            held.append(probe)
            probe.bind((host, 0))
            base = int(probe.getsockname()[1])
            if base + MEDIA_PORTS > 65536 or base <= avoid < base + MEDIA_PORTS:
                continue
            for port in range(base + 1, base + MEDIA_PORTS):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {MEDIA_PORTS} consecutive free UDP ports on {host}")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@dataclass
class NodeProc:
    name: str
    host: str
    sip_port: int
    admin_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def target(self) -> str:
        return f"{self.host}:{self.sip_port}"

    @property
    def admin_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.admin_port}"

    def client(self) -> AdminClient:
        return AdminClient(self.admin_url, TOKEN)

    async def metrics(self) -> dict[str, float]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.admin_url + "/metrics") as response,
        ):
            return parse_metrics(await response.text())

    async def state(self) -> NodeState:
        async with self.client() as client:
            return await client.state()

    async def members(self, group: str) -> int:
        state = await self.state()
        return sum(s.members for s in state.shards if s.group == group)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@dataclass
class Fleet:
    """Starts sipfleet-node processes for one test and stops them afterwards."""

    tmp: Path
    nodes: list[NodeProc] = field(default_factory=list)

    @property
    def token_file(self) -> Path:
        path = self.tmp / "token"
        if not path.exists():
            path.write_text(TOKEN + "\n")
        return path

    async def start(
        self, name: str, host: str, role: str = "node", *extra: str, same_as: NodeProc | None = None
    ) -> NodeProc:
        """Start a server; `same_as`: on that (killed) server's ports, as a container
        restart in the same Pod keeps its address."""
        sip_port, admin_port = (
            free_ports(host, 2) if same_as is None else (same_as.sip_port, same_as.admin_port)
        )
        log = self.tmp / f"{name}{'' if same_as is None else '-restarted'}.log"
        proc = subprocess.Popen(
            [
                str(NODE_BIN),
                "--role",
                role,
                "--name",
                name,
                "--domain",
                "example.com",
                "--listen",
                host,
                "--sip-port",
                str(sip_port),
                "--admin-port",
                str(admin_port),
                "--token-file",
                str(self.token_file),
                *extra,
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        node = NodeProc(name, host, sip_port, admin_port, proc, log)
        self.nodes.append(node)
        async with node.client() as client:
            for _ in range(100):
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited: {log.read_text()}")
                if await client.ready():
                    return node
                await asyncio.sleep(0.1)
        pytest.fail(f"{name} not ready after 10 s: {log.read_text()}")

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class Sipp:
    """One sipp process running a scenario from tests/integration/scenarios."""

    scenario: str
    target: str
    service: str
    who: str
    tmp: Path
    calls: int = 1
    rate: float = 10.0
    sets: dict[str, str] = field(default_factory=dict)  # -set name value (scenario [$name])
    timeout: int = 60
    keys: dict[str, str] = field(default_factory=dict)  # -key name value (scenario [name])
    port: int = 0  # local SIP port; 0 = any free one
    extra: tuple[str, ...] = ()  # more sipp options, e.g. ("-au", user, "-ap", password)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sipp:
        port = self.port or free_port("127.0.0.1")
        media = free_media_base("127.0.0.1", avoid=port)
        keys = [arg for name, value in self.keys.items() for arg in ("-key", name, value)]
        keys += [arg for name, value in self.sets.items() for arg in ("-set", name, value)]
        base = self.tmp / f"sipp-{self.who}"
        self._stat = base.with_suffix(".csv")
        self._errors = base.with_suffix(".errors")
        self._out = base.with_suffix(".out")
        self.proc = subprocess.Popen(
            [
                SIPP,
                *([self.target] if self.target else []),
                "-sf",
                str(SCENARIOS / self.scenario),
                "-s",
                self.service,
                "-key",
                "who",
                self.who,
                *keys,
                "-m",
                str(self.calls),
                "-r",
                str(self.rate),
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "-mp",
                str(media),
                "-nostdin",
                "-timeout",
                f"{self.timeout}s",
                "-timeout_error",
                "-trace_err",
                "-error_file",
                str(self._errors),
                "-trace_stat",
                "-stf",
                str(self._stat),
                "-fd",
                "1",
                *self.extra,
            ],
            stdout=self._out.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        return self

    async def wait(self) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout + 10
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
            await asyncio.sleep(0.1)
        return self.proc.returncode

    def successful(self) -> int:
        """Successful calls from sipp's own statistics file (written every second)."""
        if not self._stat.exists():
            return 0
        with self._stat.open() as f:
            rows = list(csv.reader(f, delimiter=";"))
        if len(rows) < 2:
            return 0
        header, last = rows[0], rows[-1]
        return int(last[header.index("SuccessfulCall(C)")])

    async def wait_successful(self, count: int, timeout: float = 30.0) -> None:
        async def done() -> bool:
            return self.successful() >= count

        await eventually(done, timeout, f"{count} successful calls of {self.who}")

    def report(self) -> str:
        errors = self._errors.read_text()[-3000:] if self._errors.exists() else ""
        return f"{self.who}: rc={self.proc and self.proc.returncode}\n{errors}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


SippFactory = Callable[..., Sipp]


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Poll an async predicate until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def member_credentials(tmp: Path, passwords: dict[str, str], realm: str = "example.com") -> Path:
    """A --credentials-file (realm -> user -> algorithm -> HA1, SHA-256 and MD5), as the
    operator mounts it from a Secret (docs/security.md)."""
    from sipfleet.node.auth.digest import ALGORITHMS, ha1

    data = {realm: {u: {a: ha1(a, u, realm, p) for a in ALGORITHMS} for u, p in passwords.items()}}
    path = tmp / "credentials.json"
    path.write_text(json.dumps(data))
    return path
