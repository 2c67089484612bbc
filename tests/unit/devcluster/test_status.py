from sipfleet.devcluster.kubelet.status import (
    ContainerSnapshot,
    Running,
    Terminated,
    Waiting,
    conditions,
    container_status,
    phase,
)

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:00Z"


def snap(state: Waiting | Running | Terminated, **kw: object) -> ContainerSnapshot:
    return ContainerSnapshot("c", "img", state, **kw)  # type: ignore[arg-type]


def test_phase_pending_until_started() -> None:
    assert phase([]) == "Pending"
    assert phase([snap(Waiting("ContainerCreating"))]) == "Pending"
    assert phase([snap(Running(T0)), snap(Waiting("ContainerCreating"))]) == "Pending"


def test_phase_running_while_running_or_restarting() -> None:
    assert phase([snap(Running(T0))]) == "Running"
    exited = Terminated(1, "Error", T0, T1)
    assert (
        phase([snap(Waiting("CrashLoopBackOff"), last_state=exited, restart_count=1)]) == "Running"
    )
    assert phase([snap(exited, will_restart=True)]) == "Running"


def test_phase_terminal_when_all_done() -> None:
    ok = Terminated(0, "Completed", T0, T1)
    bad = Terminated(2, "Error", T0, T1)
    assert phase([snap(ok, will_restart=False)]) == "Succeeded"
    assert phase([snap(ok, will_restart=False), snap(bad, will_restart=False)]) == "Failed"
    assert phase([snap(ok, will_restart=False), snap(Running(T0))]) == "Running"


def test_ready_conditions_follow_containers_and_keep_transition_times() -> None:
    ready = [snap(Running(T0), ready=True, started=True)]
    first = conditions(ready, [], T0)
    assert {c["type"]: c["status"] for c in first} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    again = conditions(ready, first, T1)
    assert all(c["lastTransitionTime"] == T0 for c in again)
    unready = conditions([snap(Running(T0))], again, T1)
    by_type = {c["type"]: c for c in unready}
    assert by_type["Ready"]["status"] == "False"
    assert by_type["Ready"]["lastTransitionTime"] == T1
    assert by_type["Ready"]["reason"] == "ContainersNotReady"
    assert by_type["PodScheduled"]["lastTransitionTime"] == T0


def test_container_status_shape() -> None:
    last = Terminated(137, "Error", T0, T1, signal=9, message="liveness probe failed")
    status = container_status(
        ContainerSnapshot("web", "python:3", Running(T1), last, 2, True, True, True, "sipfleet://7")
    )
    assert status["state"] == {"running": {"startedAt": T1}}
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert status["lastState"]["terminated"]["signal"] == 9
    assert status["restartCount"] == 2
    assert status["containerID"] == "sipfleet://7"
    waiting = container_status(snap(Waiting("CreateContainerConfigError", "secret 'x' not found")))
    assert waiting["state"]["waiting"]["message"] == "secret 'x' not found"


def test_readiness_gates_hold_ready_and_foreign_conditions_survive() -> None:
    ready = [snap(Running(T0), ready=True, started=True)]
    gate = {"type": "example.com/lb", "status": "False", "lastTransitionTime": T0}
    result = {
        c["type"]: c for c in conditions(ready, [gate], T1, readiness_gates=["example.com/lb"])
    }
    assert result["ContainersReady"]["status"] == "True"
    assert result["Ready"]["status"] == "False"
    assert result["Ready"]["reason"] == "ReadinessGatesNotReady"
    assert result["example.com/lb"] == gate
    opened = [{**gate, "status": "True"}]
    result = {
        c["type"]: c for c in conditions(ready, opened, T1, readiness_gates=["example.com/lb"])
    }
    assert result["Ready"]["status"] == "True"
