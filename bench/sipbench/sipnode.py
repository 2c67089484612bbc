"""sip-node under test: one `sipfleet-node --role main` process and its admin API."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipbench.fanout import MemberReceiver
from sipbench.procs import BenchError, Procs, free_port

SIPFLEET_NODE = Path(sys.executable).parent / "sipfleet-node"
DOMAIN = "bench.sipfleet.test"
# The per-source rate limit (default 500/s) would reject the benchmark's own load;
# it stays in the path (the check runs per request) but with a limit never reached.
NO_LIMIT = "1000000000"


@dataclass(frozen=True)
class SipNode:
    proc: subprocess.Popen[bytes]
    host: str
    sip_port: int
    admin_port: int
    token: str

    def group_uri(self, user: str) -> str:
        return f"sip:{user}@{DOMAIN}"

    def admin(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://{self.host}:{self.admin_port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise BenchError(
                f"sip-node admin {method} {path} -> {exc.code}: {exc.read()[:300]!r}"
            ) from None

    def metric(self, name: str) -> float:
        """One unlabelled sample from /metrics (NaN when absent)."""
        url = f"http://{self.host}:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return float("nan")

    def ensure_group(self, user: str, capacity: int) -> dict[str, Any]:
        shard: dict[str, Any] = self.admin(
            "POST", "/v1/shards", {"group": self.group_uri(user), "capacity": capacity}
        )
        return shard


def core(code_dir: Path | None = None) -> str:
    """Which SIP core a sip-node started now runs: "compiled (mypyc)" when a build
    for its sources exists (scripts/build_mypyc.py) and SIPFLEET_PURE_PYTHON is not
    set, else "pure Python"."""
    env = None if code_dir is None else dict(os.environ, PYTHONPATH=str(code_dir.resolve()))
    probe = "from sipfleet.node.sip import compiled; print(compiled.ACTIVE)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    return "compiled (mypyc)" if out.stdout.strip() == "True" else "pure Python"


def start(
    procs: Procs,
    host: str,
    wrapper: list[str] | None = None,
    name: str = "sip-node",
    code_dir: Path | None = None,
    extra: list[str] | None = None,
) -> SipNode:
    """Start sip-node and wait for /readyz (`extra`: more sipfleet-node flags).

    `wrapper` is an argv to run it under (a profiler, an interpreter with flags);
    `code_dir` replaces the installed sip-node folder (to measure a patched copy).
    Other programs on the machine may grab the free ports we picked before sip-node
    binds them: then it is started again on new ports (three attempts).
    """
    if not SIPFLEET_NODE.exists():
        raise BenchError(f"{SIPFLEET_NODE} is missing: install the project (make venv)")
    env = None
    if code_dir is not None:
        if not (code_dir / "sipfleet" / "node" / "__init__.py").exists():
            raise BenchError(f"{code_dir} is not a sip-node folder (no sipfleet/node/__init__.py)")
        env = dict(os.environ, PYTHONPATH=str(code_dir.resolve()))
    token = secrets.token_hex(16)
    token_file = procs.workdir / f"{name}.token"
    token_file.write_text(token)
    for _attempt in range(3):
        sip_port, admin_port = free_port(host), free_port(host, kind=socket.SOCK_STREAM)
        argv = [
            *(wrapper or []), str(SIPFLEET_NODE), "--role", "main", "--name", "bench",
            "--domain", DOMAIN, "--listen", host, "--sip-port", str(sip_port),
            "--admin-port", str(admin_port), "--token-file", str(token_file),
            "--rate-limit", NO_LIMIT, "--rate-burst", NO_LIMIT, "--log-level", "WARNING",
            *(extra or []),
        ]  # fmt: skip
        proc = procs.start(name, argv, env=env)
        if _wait_ready(proc, host, admin_port):
            return SipNode(proc, host, sip_port, admin_port, token)
        procs.stop(proc)
        if "address already in use" not in procs.log_tail(name, 3):
            break
    raise BenchError(f"sip-node did not become ready\n{procs.log_tail(name)}")


def _wait_ready(proc: subprocess.Popen[bytes], host: str, admin_port: int) -> bool:
    """True once /readyz answers 200; False if the process exits or 20 s pass."""
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{host}:{admin_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


# A plain audio offer; sip-node answers it inactive (signalling-only conference).
SDP_OFFER = (
    "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
)


def join(
    node: SipNode,
    receiver: MemberReceiver,
    group_user: str,
    users: list[str],
    timeout: float = 90.0,
) -> dict[str, Any]:
    """INVITE `users` into the group from the receiver's socket; all must get 200."""
    result = receiver.call(
        {
            "cmd": "join",
            "host": node.host,
            "port": node.sip_port,
            "group_uri": node.group_uri(group_user),
            "users": users,
            "timeout": timeout,
            "body": SDP_OFFER,
        },
        timeout + 10.0,
    )
    if result.get("joined") != len(users):
        raise BenchError(f"only {result.get('joined')}/{len(users)} members joined: {result}")
    return result


@dataclass(frozen=True)
class Setup:
    """A running sip-node with the benchmark's two groups.

    `solo` has the sender as its only member (throughput test: no deliveries);
    `bench` has the sender and every fan-out member.
    """

    node: SipNode
    sender_uri: str
    join_seconds: float
    joined: dict[str, Any]


def setup(
    procs: Procs,
    host: str,
    receiver: MemberReceiver,
    sender: str,
    members: list[str],
    wrapper: list[str] | None = None,
    code_dir: Path | None = None,
) -> Setup:
    node = start(procs, host, wrapper, code_dir=code_dir)
    node.ensure_group("solo", 10)
    join(node, receiver, "solo", [sender])
    node.ensure_group("bench", len(members) + 10)
    t0 = time.monotonic()
    joined = join(node, receiver, "bench", [sender, *members])
    return Setup(node, f"sip:{sender}@{host}:{receiver.port}", time.monotonic() - t0, joined)
