"""One Pod's lifecycle on the local node.

setup (address, Secrets/ConfigMaps, ServiceAccount token, volumes, argv/env)
-> init containers in order -> containers under supervision -> status
reports -> on deletion: SIGTERM, grace period, SIGKILL, final delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipfleet.devcluster.kubelet import status as statusmod
from sipfleet.devcluster.kubelet.api import TRANSIENT_ERRORS, Api, ApiError
from sipfleet.devcluster.kubelet.container import ContainerPlan, ContainerRunner
from sipfleet.devcluster.kubelet.events import EventRecorder
from sipfleet.devcluster.kubelet.ipam import IPAllocator
from sipfleet.devcluster.kubelet.node import now_rfc3339
from sipfleet.devcluster.kubelet.setup import HOST_IP, SETUP_ERRORS, PodSetup

log = logging.getLogger(__name__)

TOKEN_REFRESH_SECONDS = 1800.0


@dataclass(frozen=True)
class KubeletContext:
    api: Api
    node_name: str
    pods_dir: Path
    ipam: IPAllocator
    events: EventRecorder
    pod_path: str  # PATH for pod processes


def pod_key(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


class PodWorker:
    def __init__(self, ctx: KubeletContext, pod: dict[str, Any]) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.dir = ctx.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"
        self.pod_ip = ""
        self.runners: list[ContainerRunner] = []
        self.init_runners: list[ContainerRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._gone = False
        self._setup_error = ""
        self._initialized = False
        self._start_time = pod.get("status", {}).get("startTime") or now_rfc3339()
        self._last_status: dict[str, Any] | None = None
        self.setup = PodSetup(ctx.api, ctx.pod_path, self.dir)
        self._event = ctx.events.for_pod(lambda: self.pod)

    # -- inputs from the watch ---------------------------------------------
    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self._changed.set()

    def gone(self) -> None:
        """The Pod object no longer exists (force-deleted or finalized)."""
        self._gone = True
        self._changed.set()

    @property
    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    @property
    def _api_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"

    async def _wait_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    # -- main ----------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._main()
        except asyncio.CancelledError:
            await self._stop_all(grace=5.0)
            raise
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.name)
            await self._stop_all(grace=5.0)
        finally:
            self.ctx.ipam.release(self.uid)

    async def _main(self) -> None:
        phase = self.pod.get("status", {}).get("phase")
        if phase not in ("Succeeded", "Failed") and not self._deleting:
            self.pod_ip = self.ctx.ipam.allocate(
                self.uid, preferred=self.pod.get("status", {}).get("podIP")
            )
            self.dir.mkdir(parents=True, exist_ok=True)
            if await self._setup():
                # The containers' supervisor first: _stop_all waits for it.
                self._tasks.append(asyncio.create_task(self._containers()))
                self._tasks.append(asyncio.create_task(self._refresh_tokens()))
        while not self._gone:
            if self._deleting:
                await self._terminate()
                return
            await self._report()
            await self._wait_change(5.0)
        await self._stop_all(grace=2.0)  # force-deleted: the object is gone already
        self._remove_files()

    async def _setup(self) -> bool:
        """Resolve everything; on failure report why and retry until deleted."""
        while not (self._gone or self._deleting):
            try:
                plans, init_plans = await self.setup.prepare(self.pod, self.pod_ip)
            except SETUP_ERRORS as err:
                message = str(err)
                if message != self._setup_error:
                    log.warning("pod %s/%s: %s", self.namespace, self.name, message)
                    self._event("Failed", f"Error: {message}", "Warning")
                self._setup_error = message
                await self._report()
                await self._wait_change(3.0)
                continue
            self._setup_error = ""
            restarts = {
                s["name"]: int(s.get("restartCount", 0))
                for s in self.pod.get("status", {}).get("containerStatuses") or []
            }
            self.runners = [self._runner(p, self._policy, restarts.get(p.name, 0)) for p in plans]
            init_policy = "Never" if self._policy == "Never" else "OnFailure"
            self.init_runners = [self._runner(p, init_policy, 0) for p in init_plans]
            return True
        return False

    @property
    def _policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy", "Always"))

    def _spec_containers(self, key: str) -> list[dict[str, Any]]:
        return list(self.pod["spec"].get(key) or [])

    def _runner(self, plan: ContainerPlan, policy: str, restarts: int) -> ContainerRunner:
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        return ContainerRunner(
            plan,
            pod_ip=self.pod_ip,
            restart_policy=policy,
            grace_seconds=grace,
            on_change=self._changed.set,
            on_event=self._event,
            restart_count=restarts,
        )

    async def _refresh_tokens(self) -> None:
        while True:
            await asyncio.sleep(TOKEN_REFRESH_SECONDS)
            try:
                await self.setup.write_files(self.pod, self.pod_ip)
            except SETUP_ERRORS as err:
                log.warning("pod %s/%s: token refresh failed: %s", self.namespace, self.name, err)

    async def _containers(self) -> None:
        for runner in self.init_runners:
            await runner.run()
            final = runner.state
            if not isinstance(final, statusmod.Terminated) or final.exit_code != 0:
                self._changed.set()
                return  # restartPolicy Never: the pod has failed
        self._initialized = True
        self._changed.set()
        await asyncio.gather(*(runner.run() for runner in self.runners))

    # -- status ----------------------------------------------------------------
    def _snapshots(
        self, runners: list[ContainerRunner], key: str
    ) -> list[statusmod.ContainerSnapshot]:
        if runners:
            return [r.snapshot() for r in runners]
        reason = "CreateContainerConfigError" if self._setup_error else "ContainerCreating"
        if key == "containers" and self.init_runners and not self._initialized:
            reason = "PodInitializing"
        waiting = statusmod.Waiting(reason, self._setup_error)
        return [
            statusmod.ContainerSnapshot(c["name"], str(c.get("image", "")), waiting)
            for c in self._spec_containers(key)
        ]

    def compute_status(self) -> dict[str, Any]:
        snaps = self._snapshots(self.runners, "containers")
        init_snaps = self._snapshots(self.init_runners, "initContainers")
        if self.init_runners and not self._initialized:
            snaps = [
                statusmod.ContainerSnapshot(s.name, s.image, statusmod.Waiting("PodInitializing"))
                for s in snaps
            ]
        init_failed = any(
            isinstance(s.state, statusmod.Terminated)
            and s.state.exit_code != 0
            and not s.will_restart
            for s in init_snaps
        )
        previous = self.pod.get("status", {}).get("conditions") or []
        status: dict[str, Any] = {
            "phase": "Failed" if init_failed else statusmod.phase(snaps),
            "conditions": statusmod.conditions(
                snaps,
                previous,
                now_rfc3339(),
                initialized=self._initialized or not init_snaps,
                readiness_gates=[
                    g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []
                ],
            ),
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "startTime": self._start_time,
            "containerStatuses": [statusmod.container_status(s) for s in snaps],
        }
        if init_snaps:
            status["initContainerStatuses"] = [statusmod.container_status(s) for s in init_snaps]
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        return status

    async def _report(self) -> None:
        if not self.pod_ip:
            return  # a terminal pod from an earlier run: its status stays as it was
        status = self.compute_status()
        if status == self._last_status:
            return
        try:
            self.pod = await self.ctx.api.merge_patch(
                self._api_path + "/status", {"status": status}
            )
            self._last_status = status
        except ApiError as err:
            if err.status == 404:
                self.gone()
            else:
                log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, err)
        except TRANSIENT_ERRORS as err:
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, err)

    # -- stop --------------------------------------------------------------------
    async def _stop_all(self, grace: float) -> None:
        await asyncio.gather(*(r.stop(grace) for r in [*self.init_runners, *self.runners]))
        # Let the supervisors record the final container states before cancelling.
        if self._tasks:
            await asyncio.wait(self._tasks[:1], timeout=2.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _terminate(self) -> None:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        log.info("pod %s/%s: stopping (grace %ss)", self.namespace, self.name, grace)
        await self._stop_all(float(grace))
        await self._report()
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        with contextlib.suppress(ApiError):
            await self.ctx.api.delete(self._api_path, body)
        self._remove_files()

    def _remove_files(self) -> None:
        """Keep the container logs; drop credentials and volume contents."""
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)
        self.setup.kubeconfig_path.unlink(missing_ok=True)
