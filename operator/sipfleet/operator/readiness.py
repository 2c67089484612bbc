"""Let the kubelet see a starting server Ready as soon as it answers /readyz.

The kubelet runs a container's readiness probe on a ticker (``periodSeconds``,
1 s at the least) and, besides, once each time it syncs a Pod whose container
is running but not Ready (pkg/kubelet/prober/prober_manager.go
``UpdatePodStatus`` triggers the probe at once). A server that starts
listening just after a tick waits for the next one: 0.5-0.8 s on the real
node (bench/results/operator.md). Any change of the Pod's metadata makes the
kubelet sync the Pod, so the operator polls a starting server's ``/readyz``
itself and, the moment it answers 200, writes the annotation
``SERVING_ANNOTATION`` on its Pod: the kubelet probes at once. Ready stays
the kubelet's verdict, from its own probe.

One watch per container (a restarted container gets a new one), at most
``WATCH_SECONDS`` long, ``POLL_SECONDS`` between reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from sipfleet.operator import pods as podlib

SERVING_ANNOTATION = "sipfleet.io/serving-since"
"""Written (RFC 3339 time) when the operator saw the container's server answer /readyz."""
POLL_SECONDS = 0.05
WATCH_SECONDS = 60.0
READ_TIMEOUT = aiohttp.ClientTimeout(total=0.5)


def starting_container(pod: Mapping[str, Any]) -> str | None:
    """The ID of the Pod's running container while the Pod is not Ready (None
    otherwise: no IP yet, not started, Ready, or terminating)."""
    if podlib.terminating(pod) or podlib.pod_ready(pod):
        return None
    status = pod.get("status") or {}
    if not status.get("podIP"):
        return None
    for container in status.get("containerStatuses") or []:
        if "running" in (container.get("state") or {}) and container.get("containerID"):
            return str(container["containerID"])
    return None


async def wait_serving(session: aiohttp.ClientSession, url: str, done: Callable[[], bool]) -> bool:
    """Poll ``url``/readyz until it answers 200 (True) or ``done()`` holds or
    WATCH_SECONDS pass (False)."""
    deadline = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < deadline and not done():
        try:
            async with session.get(url + "/readyz", timeout=READ_TIMEOUT) as resp:
                if resp.status == 200:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass  # not listening yet
        await asyncio.sleep(POLL_SECONDS)
    return False


def serving_patch(now: float) -> dict[str, Any]:
    """The metadata patch that marks the server as answering at ``now`` (epoch s)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    return {"metadata": {"annotations": {SERVING_ANNOTATION: stamp}}}
