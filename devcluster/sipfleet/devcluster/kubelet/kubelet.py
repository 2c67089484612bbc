"""The kubelet's main loop: list+watch all Pods, bind the unscheduled ones to
this node (the local cluster has no scheduler), run a worker per bound Pod."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sipfleet.devcluster import procs
from sipfleet.devcluster.kubelet.api import TRANSIENT_ERRORS, Api, ApiError
from sipfleet.devcluster.kubelet.events import EventRecorder
from sipfleet.devcluster.kubelet.images import search_path
from sipfleet.devcluster.kubelet.ipam import HostClaims, IPAllocator
from sipfleet.devcluster.kubelet.node import NodeAgent
from sipfleet.devcluster.kubelet.pod import KubeletContext, PodWorker, pod_key
from sipfleet.devcluster.kubelet.server import serve as serve_http
from sipfleet.devcluster.kubelet.status import Running

log = logging.getLogger(__name__)

SCHEDULER = "default-scheduler"


def wants_binding(pod: dict[str, Any]) -> bool:
    """Unscheduled, not being deleted, and meant for the default scheduler."""
    spec = pod.get("spec", {})
    return (
        not spec.get("nodeName")
        and not pod["metadata"].get("deletionTimestamp")
        and spec.get("schedulerName", SCHEDULER) == SCHEDULER
    )


def sweep_stale_processes(pods_dir: Path) -> list[str]:
    """Stop container processes left behind by an earlier kubelet that died."""
    stopped = []
    for path in pods_dir.glob("*/*.proc.json"):
        record = procs.load(path)
        if record is not None and procs.stop(record, timeout=5.0):
            stopped.append(f"{path.parent.name}/{record.name}")
        path.unlink(missing_ok=True)
    return stopped


class Kubelet:
    def __init__(
        self, api: Api, node_name: str, state_dir: Path, port: int, tls: ssl.SSLContext
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.port = port
        self.tls = tls
        pods_dir = state_dir / "pods"
        pods_dir.mkdir(parents=True, exist_ok=True)
        self.ctx = KubeletContext(
            api=api,
            node_name=node_name,
            pods_dir=pods_dir,
            ipam=IPAllocator(HostClaims()),
            events=EventRecorder(api, node_name),
            pod_path=search_path(os.environ.get("PATH", "/usr/bin:/bin")),
        )
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        stale = sweep_stale_processes(self.ctx.pods_dir)
        if stale:
            log.warning("stopped processes of an earlier kubelet: %s", ", ".join(stale))
        http = await serve_http(self.locate_log, self.port, self.tls)
        node = NodeAgent(self.api, self.node_name, self.port)
        await node.register()
        heartbeat = asyncio.create_task(node.run())
        try:
            await self._watch_pods()
        finally:
            heartbeat.cancel()
            await self.shutdown()
            await http.cleanup()

    def locate_log(
        self, namespace: str, name: str, container: str
    ) -> tuple[Path, Callable[[], bool]] | None:
        """A container's log file and whether it is still being written."""
        for worker in self.workers.values():
            if (worker.namespace, worker.name) != (namespace, name):
                continue
            for runner in [*worker.init_runners, *worker.runners]:
                if runner.plan.name == container:
                    return runner.plan.log_path, lambda r=runner: isinstance(r.state, Running)
        # A pod that is gone: its logs stay in the state dir.
        folders = sorted(
            self.ctx.pods_dir.glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime
        )
        for folder in reversed(folders):
            path = folder / f"{container}.log"
            if path.exists():
                return path, lambda: False
        return None

    async def shutdown(self) -> None:
        """Stop every pod process (the Pod objects stay; a new kubelet restarts them)."""
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _watch_pods(self) -> None:
        while True:
            try:
                listing = await self.api.get("/api/v1/pods")
                seen = set()
                for pod in listing.get("items", []):
                    seen.add(pod["metadata"]["uid"])
                    await self._handle("ADDED", pod)
                for uid in set(self.workers) - seen:
                    self._forget(uid)
                version = listing["metadata"]["resourceVersion"]
                async for event in self.api.watch("/api/v1/pods", version):
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        log.info("watch ended: %s", obj.get("message"))
                        break
                    if kind == "BOOKMARK":
                        continue
                    await self._handle(kind, obj)
            except TRANSIENT_ERRORS as err:
                log.warning("pod watch failed, relisting: %s", err)
                await asyncio.sleep(1.0)

    async def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if kind == "DELETED":
            self._forget(uid)
            return
        node = pod.get("spec", {}).get("nodeName")
        if wants_binding(pod):
            await self._bind(pod)
        elif node == self.node_name:
            worker = self.workers.get(uid)
            if worker is None:
                worker = PodWorker(self.ctx, pod)
                self.workers[uid] = worker
                self.tasks[uid] = asyncio.create_task(self._run_worker(uid, worker))
            else:
                worker.update(pod)

    async def _run_worker(self, uid: str, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            self.workers.pop(uid, None)
            self.tasks.pop(uid, None)

    def _forget(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.gone()

    async def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding"
        try:
            await self.api.post(path, body)
            log.info("bound %s to %s", pod_key(pod), self.node_name)
            self.ctx.events.emit(
                pod, "Scheduled", f"Successfully assigned {pod_key(pod)} to {self.node_name}"
            )
        except ApiError as err:
            if err.status not in (404, 409):
                log.warning("binding %s failed: %s", pod_key(pod), err)
