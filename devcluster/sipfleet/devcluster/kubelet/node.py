"""The Node object: registration, status heartbeat and the Lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sipfleet.devcluster.binaries import KUBE_VERSION
from sipfleet.devcluster.kubelet.api import TRANSIENT_ERRORS, Api, ApiError

log = logging.getLogger(__name__)

LEASE_SECONDS = 40
LEASE_RENEW = 10.0
STATUS_EVERY = 30.0
MAX_PODS = 110
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def node_status(host_ip: str, port: int) -> dict[str, Any]:
    """Ready, with this machine's capacity; the heartbeat time is now."""
    now = now_rfc3339()
    capacity = {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{_memory_bytes() // 1024}Ki",
        "pods": str(MAX_PODS),
        "ephemeral-storage": "10Gi",
    }

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
            condition(
                "Ready", "True", "KubeletReady", "sipfleet local kubelet is posting ready status"
            ),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "addresses": [
            {"type": "InternalIP", "address": host_ip},
            {"type": "Hostname", "address": platform.node() or "localhost"},
        ],
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/etc/machine-id"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": "sipfleet local processes",
            "containerRuntimeVersion": "sipfleet-local://0.1.0",
            "kubeletVersion": KUBE_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            ),
        },
    }


class NodeAgent:
    """Keeps one Node registered and Ready, and its Lease renewed."""

    def __init__(self, api: Api, name: str, port: int, host_ip: str = "127.0.0.1") -> None:
        self.api = api
        self.name = name
        self.port = port
        self.host_ip = host_ip

    async def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "node.sipfleet.io/local": "true",
                },
            },
        }
        with contextlib.suppress(ApiError):
            await self.api.post("/api/v1/nodes", node)
        await self.post_status()
        await self._drop_not_ready_taint()

    async def post_status(self) -> None:
        await self.api.merge_patch(
            f"/api/v1/nodes/{self.name}/status", {"status": node_status(self.host_ip, self.port)}
        )

    async def _drop_not_ready_taint(self) -> None:
        # Admission taints new nodes not-ready; the node lifecycle controller
        # (not run here) would lift it once Ready, so the kubelet does.
        node = await self.api.get(f"/api/v1/nodes/{self.name}")
        taints = node.get("spec", {}).get("taints") or []
        kept = [t for t in taints if t.get("key") != NOT_READY_TAINT]
        if kept != taints:
            await self.api.merge_patch(f"/api/v1/nodes/{self.name}", {"spec": {"taints": kept}})

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now_micro(),
        }
        try:
            lease = await self.api.get(path)
        except ApiError as err:
            if err.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            await self.api.post(path.rsplit("/", 1)[0], body)
            return
        lease["spec"] = {**lease.get("spec", {}), **spec}
        await self.api.put(path, lease)

    async def run(self) -> None:
        """Renew the Lease every 10 s and re-post status every 30 s, forever."""
        since_status = 0.0
        while True:
            try:
                await self.renew_lease()
                if since_status >= STATUS_EVERY:
                    await self.post_status()
                    since_status = 0.0
            except TRANSIENT_ERRORS as err:
                log.warning("node heartbeat failed: %s", err)
            await asyncio.sleep(LEASE_RENEW)
            since_status += LEASE_RENEW
