"""A main server and a node as plain processes (no Kubernetes), driven by AdminClient."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from sipbench.procs import BenchError, Procs, free_port
from sipfleet.node.admin_client import AdminClient

SIPFLEET_NODE = Path(sys.executable).parent / "sipfleet-node"
DOMAIN = "example.com"
# The load generator is one UDP socket; the per-source limit (500/s) would throttle
# it, while real members come from many addresses. Raised out of the way.
NO_LIMIT = "1000000000"


@dataclass
class Server:
    name: str
    host: str
    sip_port: int
    admin: AdminClient

    @property
    def sip_hostport(self) -> str:
        return f"{self.host}:{self.sip_port}"


async def start(procs: Procs, role: str, name: str, host: str, token_file: Path) -> Server:
    """Start ``sipfleet-node`` and wait (20 s at most) until /readyz answers."""
    token = token_file.read_text().strip()
    sip_port, admin_port = free_port(host), free_port(host, kind=socket.SOCK_STREAM)
    argv = [
        str(SIPFLEET_NODE), "--role", role, "--name", name, "--domain", DOMAIN,
        "--listen", host, "--sip-port", str(sip_port), "--admin-port", str(admin_port),
        "--token-file", str(token_file), "--rate-limit", NO_LIMIT, "--rate-burst", NO_LIMIT,
        "--log-level", "WARNING",
    ]  # fmt: skip
    proc = procs.start(name, argv)
    admin = AdminClient(f"http://{host}:{admin_port}", token, timeout=5.0)
    for _ in range(100):
        if proc.poll() is not None:
            break
        if await admin.ready():
            return Server(name, host, sip_port, admin)
        await asyncio.sleep(0.2)
    await admin.close()
    raise BenchError(f"{name} did not become ready\n{procs.log_tail(name)}")


def new_token(workdir: Path) -> Path:
    path = workdir / "token"
    path.write_text(secrets.token_hex(16))
    path.chmod(0o600)
    return path
