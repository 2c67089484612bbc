"""Pod status from container snapshots: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: str


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    signal: int | None = None
    message: str = ""


State = Waiting | Running | Terminated


@dataclass(frozen=True)
class ContainerSnapshot:
    name: str
    image: str
    state: State
    last_state: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    # False once the container has exited for good (restartPolicy says so).
    will_restart: bool = True
    container_id: str = ""


def state_dict(state: State | None) -> dict[str, Any]:
    if state is None:
        return {}
    if isinstance(state, Waiting):
        body: dict[str, Any] = {"reason": state.reason}
        if state.message:
            body["message"] = state.message
        return {"waiting": body}
    if isinstance(state, Running):
        return {"running": {"startedAt": state.started_at}}
    body = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "startedAt": state.started_at,
        "finishedAt": state.finished_at,
    }
    if state.signal is not None:
        body["signal"] = state.signal
    if state.message:
        body["message"] = state.message
    return {"terminated": body}


def container_status(snap: ContainerSnapshot) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": snap.name,
        "image": snap.image,
        "imageID": "",
        "ready": snap.ready,
        "started": snap.started,
        "restartCount": snap.restart_count,
        "state": state_dict(snap.state),
        "lastState": state_dict(snap.last_state),
    }
    if snap.container_id:
        status["containerID"] = snap.container_id
    return status


def phase(snaps: list[ContainerSnapshot]) -> str:
    """Pending until every container has started once; terminal when all are done."""
    if not snaps:
        return "Pending"
    if all(isinstance(s.state, Terminated) and not s.will_restart for s in snaps):
        failed = any(isinstance(s.state, Terminated) and s.state.exit_code != 0 for s in snaps)
        return "Failed" if failed else "Succeeded"
    never_started = any(
        isinstance(s.state, Waiting) and s.restart_count == 0 and s.last_state is None
        for s in snaps
    )
    return "Pending" if never_started else "Running"


def conditions(
    snaps: list[ContainerSnapshot],
    previous: list[dict[str, Any]],
    now: str,
    *,
    initialized: bool = True,
    readiness_gates: list[str] | tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """PodScheduled, Initialized, ContainersReady, Ready, plus any condition
    others set (readiness gates, DisruptionTarget) unchanged. Transition times
    are kept from `previous` while a condition's status does not change; Ready
    also needs every readiness gate's condition to be True."""
    old = {c.get("type"): c for c in previous}
    containers_ready = bool(snaps) and all(s.ready for s in snaps)
    gates_open = all(old.get(g, {}).get("status") == "True" for g in readiness_gates)
    wanted = {
        "PodScheduled": True,
        "Initialized": initialized,
        "ContainersReady": containers_ready,
        "Ready": containers_ready and gates_open,
    }
    result = []
    for kind, ok in wanted.items():
        status = "True" if ok else "False"
        prior = old.get(kind) or {}
        changed = prior.get("status") != status
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": now if changed else prior.get("lastTransitionTime", now),
        }
        if not ok and kind in ("ContainersReady", "Ready"):
            if containers_ready:
                closed = sorted(
                    g for g in readiness_gates if old.get(g, {}).get("status") != "True"
                )
                condition["reason"] = "ReadinessGatesNotReady"
                condition["message"] = (
                    f"corresponding condition of pod readiness gate {closed} "
                    "does not exist or is not True"
                )
            else:
                waiting = sorted(s.name for s in snaps if not s.ready)
                condition["reason"] = "ContainersNotReady"
                condition["message"] = f"containers with unready status: [{' '.join(waiting)}]"
        result.append(condition)
    result.extend(c for c in previous if c.get("type") not in wanted)
    return result
