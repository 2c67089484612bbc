"""Readiness, liveness and startup probes against a Pod's loopback address.

``ProbeTracker`` is the pure part: consecutive results against
successThreshold / failureThreshold decide the probe's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class ProbeSettings:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def from_spec(cls, probe: dict[str, Any]) -> ProbeSettings:
        return cls(
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


class ProbeTracker:
    """None until a threshold is crossed, then True (passing) or False (failing)."""

    def __init__(self, success_threshold: int, failure_threshold: int) -> None:
        self.success_threshold = max(1, success_threshold)
        self.failure_threshold = max(1, failure_threshold)
        self.result: bool | None = None
        self._successes = 0
        self._failures = 0

    def record(self, ok: bool) -> bool | None:
        """Add one probe result; return the (possibly changed) outcome."""
        if ok:
            self._successes += 1
            self._failures = 0
            if self._successes >= self.success_threshold:
                self.result = True
        else:
            self._failures += 1
            self._successes = 0
            if self._failures >= self.failure_threshold:
                self.result = False
        return self.result


def loopback_host(host: str) -> str:
    """Probes only ever target loopback addresses (the Pod IPs live there)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"probe host {host!r} is not a loopback address")


def resolve_port(port: int | str, container: dict[str, Any]) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"probe names port {port!r}, which the container does not declare")


async def _http_get(spec: dict[str, Any], host: str, port: int, timeout: float) -> tuple[bool, str]:
    scheme = str(spec.get("scheme", "HTTP")).lower()
    path = spec.get("path", "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
    url = f"{scheme}://{loopback_host(spec.get('host') or host)}:{port}{path}"
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(url, headers=headers, ssl=False, allow_redirects=False) as resp,
    ):
        ok = 200 <= resp.status < 400
        return ok, f"HTTP probe {url} returned {resp.status}"


async def _tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"TCP probe {host}:{port} connected"


async def _exec(
    argv: list[str], env: Mapping[str, str], cwd: str, timeout: float
) -> tuple[bool, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"exec probe {argv[0]} timed out after {timeout:g}s"
    text = out.decode(errors="replace").strip()[-200:]
    return proc.returncode == 0, f"exec probe exited {proc.returncode}: {text}"


async def run_probe(
    probe: dict[str, Any],
    *,
    container: dict[str, Any],
    pod_ip: str,
    exec_argv: list[str] | None,
    env: Mapping[str, str],
    cwd: str,
) -> tuple[bool, str]:
    """Run one probe once; (success, human-readable message). Never raises."""
    timeout = ProbeSettings.from_spec(probe).timeout
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            return await _http_get(spec, pod_ip, resolve_port(spec["port"], container), timeout)
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host = loopback_host(spec.get("host") or pod_ip)
            return await _tcp(host, resolve_port(spec["port"], container), timeout)
        if "exec" in probe and exec_argv:
            return await _exec(exec_argv, env, cwd, timeout)
        return False, f"unsupported probe handler {sorted(probe)}"
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError) as err:
        return False, f"probe failed: {type(err).__name__}: {err}"
