"""One container as a supervised local process: start, probe, restart, stop.

The process runs in its own session (process group), so stopping it also
stops whatever it spawned. Its output is appended to one log file per
container; a pid record next to it lets ``sipfleet dev down`` clean up even
if the kubelet itself died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipfleet.devcluster import procs
from sipfleet.devcluster.kubelet import restart
from sipfleet.devcluster.kubelet.events import EventSink
from sipfleet.devcluster.kubelet.node import now_rfc3339
from sipfleet.devcluster.kubelet.probes import ProbeSettings, ProbeTracker, run_probe
from sipfleet.devcluster.kubelet.status import (
    ContainerSnapshot,
    Running,
    State,
    Terminated,
    Waiting,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContainerPlan:
    """Everything resolved for starting one container."""

    spec: dict[str, Any]
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: Path
    record_path: Path
    exec_probe_argv: dict[str, list[str]]  # probe kind -> resolved exec argv

    @property
    def name(self) -> str:
        return str(self.spec["name"])


def exit_state(returncode: int, started_at: str, message: str = "") -> Terminated:
    """A Terminated state from a Popen-style return code (negative = signal)."""
    if returncode < 0:
        sig = -returncode
        return Terminated(128 + sig, "Error", started_at, now_rfc3339(), sig, message)
    reason = "Completed" if returncode == 0 else "Error"
    return Terminated(returncode, reason, started_at, now_rfc3339(), None, message)


class ContainerRunner:
    def __init__(
        self,
        plan: ContainerPlan,
        *,
        pod_ip: str,
        restart_policy: str,
        grace_seconds: float,
        on_change: Callable[[], None],
        on_event: EventSink,
        restart_count: int = 0,
    ) -> None:
        self.plan = plan
        self.pod_ip = pod_ip
        self.restart_policy = restart_policy
        self.grace_seconds = grace_seconds
        self._on_change = on_change
        self._event = on_event
        self.restart_count = restart_count
        self.state: State = Waiting("ContainerCreating")
        self.last_state: Terminated | None = None
        self.ready = False
        self.started = False
        self.will_restart = True
        self._proc: asyncio.subprocess.Process | None = None
        self._kill_message = ""
        self._stopping = False

    def snapshot(self) -> ContainerSnapshot:
        pid = self._proc.pid if self._proc is not None and isinstance(self.state, Running) else 0
        return ContainerSnapshot(
            name=self.plan.name,
            image=str(self.plan.spec.get("image", "")),
            state=self.state,
            last_state=self.last_state,
            restart_count=self.restart_count,
            ready=self.ready,
            started=self.started,
            will_restart=self.will_restart,
            container_id=f"sipfleet://{pid}" if pid else "",
        )

    def _set(self, state: State) -> None:
        self.state = state
        self._on_change()

    async def run(self) -> None:
        """Start the container and keep it per restartPolicy; return when it is done."""
        failures = 0
        while not self._stopping:
            began = time.monotonic()
            term = await self._run_once()
            if self._stopping:
                self.will_restart = False
                self._set(term)
                return
            if not restart.should_restart(self.restart_policy, term.exit_code):
                self.will_restart = False
                self._set(term)
                return
            failures = restart.next_failure_count(failures, time.monotonic() - began)
            delay = restart.backoff_delay(failures)
            self.last_state = term
            self._set(
                Waiting("CrashLoopBackOff", f"back-off {delay:g}s restarting {self.plan.name}")
            )
            await asyncio.sleep(delay)
            self.restart_count += 1

    async def _run_once(self) -> Terminated:
        started_at = now_rfc3339()
        self._kill_message = ""
        try:
            with self.plan.log_path.open("ab") as out:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.plan.argv,
                    env=self.plan.env,
                    cwd=self.plan.cwd,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as err:
            self._event("Failed", f"Error starting container {self.plan.name}: {err}", "Warning")
            return Terminated(128, "StartError", started_at, now_rfc3339(), None, str(err))
        proc = self._proc
        record = procs.ProcessRecord(
            self.plan.name, proc.pid, procs.start_time(proc.pid) or 0, self.plan.argv,
            str(self.plan.log_path),
        )  # fmt: skip
        procs.save(record, self.plan.record_path)
        spec = self.plan.spec
        self.started = "startupProbe" not in spec
        self.ready = self.started and "readinessProbe" not in spec
        self._set(Running(started_at))
        self._event("Started", f"Started container {self.plan.name}", "Normal")
        probes = [asyncio.create_task(self._probes())]
        try:
            returncode = await proc.wait()
        finally:
            for task in probes:
                task.cancel()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the container
            self.plan.record_path.unlink(missing_ok=True)
        self.ready = False
        return exit_state(returncode, started_at, self._kill_message)

    async def _probes(self) -> None:
        spec = self.plan.spec
        if "startupProbe" in spec:
            if not await self._probe_loop("startup", spec["startupProbe"]):
                return
            self.started = True
            self.ready = "readinessProbe" not in spec
            self._on_change()
        loops = [
            self._probe_loop(kind, spec[key])
            for kind, key in (("readiness", "readinessProbe"), ("liveness", "livenessProbe"))
            if key in spec
        ]
        await asyncio.gather(*loops)

    async def _probe_loop(self, kind: str, probe: dict[str, Any]) -> bool:
        """Probe until the outcome ends this loop; True if a startup probe passed."""
        settings = ProbeSettings.from_spec(probe)
        tracker = ProbeTracker(
            settings.success_threshold if kind == "readiness" else 1, settings.failure_threshold
        )
        await asyncio.sleep(settings.initial_delay)
        while True:
            ok, message = await run_probe(
                probe,
                container=self.plan.spec,
                pod_ip=self.pod_ip,
                exec_argv=self.plan.exec_probe_argv.get(kind),
                env=self.plan.env,
                cwd=self.plan.cwd,
            )
            if not ok:
                log.info("%s: %s probe: %s", self.plan.name, kind, message)
            result = tracker.record(ok)
            if kind == "readiness":
                if self.ready and result is False:
                    self._event("Unhealthy", f"Readiness probe failed: {message}", "Warning")
                if self.ready != (result is True):
                    self.ready = result is True
                    self._on_change()
            elif result is True and kind == "startup":
                return True
            elif result is False:
                self._event("Unhealthy", f"{kind.capitalize()} probe failed: {message}", "Warning")
                self._event("Killing", f"Container {self.plan.name} failed {kind} probe", "Normal")
                await self._kill(f"{kind} probe failed: {message}")
                return False
            await asyncio.sleep(settings.period)

    async def _kill(self, message: str) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._kill_message = message
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), self.grace_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def stop(self, grace_seconds: float) -> None:
        """SIGTERM, wait up to the grace period, SIGKILL; no restart afterwards."""
        self._stopping = True
        self.grace_seconds = grace_seconds
        if self._proc is not None and self._proc.returncode is None:
            self._event("Killing", f"Stopping container {self.plan.name}", "Normal")
        await self._kill("")
