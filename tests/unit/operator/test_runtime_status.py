"""SipConference and SipFleet status built from decisions and Pods."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sipfleet.operator.planner import (
    Decision,
    History,
    Limit,
    NodeAction,
    Observations,
    Route,
    ServerObservation,
    Shard,
)
from sipfleet.operator.status import (
    conference_status,
    fleet_status,
    problem_status,
    status_patch,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GROUP = "sip:conf3@example.com"
MAIN = ServerObservation("f-main", "main", True, shard=Shard("sip:conf3@m", 16, 20))
NODE = ServerObservation("f-node-1", "node", True, shard=Shard("sip:conf3-1@n", 4, 20))
OBS = Observations((NODE, MAIN))
ROUTES = (
    Route("f-main", "sip:conf3@m", "active", 0),
    Route("f-node-1", "sip:conf3-1@n", "active", 12),
)


def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_steady_conference_is_ready_and_stable() -> None:
    d = Decision(GROUP, 1, History(), routes=ROUTES, members=20, servers=2)
    s = conference_status(d, OBS, 7, None, NOW)
    assert s["observedGeneration"] == 7
    assert s["phase"] == "Running"
    assert (s["members"], s["servers"]) == (20, 2)
    assert [sh["server"] for sh in s["shards"]] == ["f-main", "f-node-1"]
    assert cond(s, "Ready")["status"] == "True"
    assert cond(s, "Scaling")["reason"] == "Stable"
    assert cond(s, "Degraded")["status"] == "False"
    assert s["lastDecision"]["kind"] == "steady"


def test_scale_out_sets_scaling_and_last_decision() -> None:
    d = Decision(
        GROUP,
        3,
        History(),
        routes=ROUTES,
        members=50,
        servers=2,
        create_nodes=2,
        create_reason="scale out by 2",
    )
    s = conference_status(d, OBS, 7, None, NOW)
    assert s["phase"] == "Scaling"
    assert cond(s, "Scaling")["status"] == "True"
    assert cond(s, "Scaling")["reason"] == "ScalingOut"
    assert s["lastDecision"] == {
        "kind": "scale-out",
        "reason": "scale out by 2",
        "time": "2026-01-01T12:00:00Z",
    }


def test_steady_pass_keeps_the_last_real_decision() -> None:
    before = {"lastDecision": {"kind": "scale-in", "reason": "drain x", "time": "t"}}
    d = Decision(GROUP, 1, History(), routes=ROUTES, members=20, servers=2)
    assert conference_status(d, OBS, 1, before, NOW)["lastDecision"]["kind"] == "scale-in"


def test_stale_metrics_say_so_in_degraded() -> None:
    d = Decision(
        GROUP,
        0,
        History(),
        routes=ROUTES,
        members=20,
        servers=2,
        limited=frozenset({Limit.METRICS_STALE}),
        notes=("no scale-in: metrics stale or missing for f-node-1",),
        degraded=("metrics stale or missing for f-node-1",),
    )
    s = conference_status(d, OBS, 1, None, NOW)
    deg = cond(s, "Degraded")
    assert deg["status"] == "True" and deg["reason"] == "MetricsStale"
    assert "no scale-in" in deg["message"]
    assert s["phase"] == "Degraded"


def test_failed_actions_degrade_a_running_conference() -> None:
    d = Decision(GROUP, 1, History(), routes=ROUTES, members=20, servers=2)
    s = conference_status(d, OBS, 1, None, NOW, ["push routes to f-node-1: 0: refused"])
    assert s["phase"] == "Degraded"
    assert cond(s, "Degraded")["reason"] == "ActionFailed"


def test_drain_is_scaling_in() -> None:
    d = Decision(
        GROUP,
        0,
        History(),
        routes=ROUTES,
        members=5,
        servers=2,
        drain=(NodeAction("f-node-1", "drain f-node-1"),),
    )
    assert cond(conference_status(d, OBS, 1, None, NOW), "Scaling")["reason"] == "ScalingIn"


def test_no_routes_means_pending_and_not_ready() -> None:
    d = Decision(GROUP, 0, History())
    s = conference_status(d, Observations(()), 1, None, NOW)
    assert s["phase"] == "Pending" and cond(s, "Ready")["status"] == "False"


def test_problem_status_keeps_last_known_shards() -> None:
    prev = {"shards": [{"server": "f-main", "uri": "sip:conf3@m", "members": 3}], "members": 3}
    s = problem_status("FleetNotFound", "SipFleet demo/f does not exist", 2, prev, NOW)
    assert s["members"] == 3 and s["phase"] == "Degraded"
    assert cond(s, "Degraded")["reason"] == "FleetNotFound"
    assert problem_status("TokenMissing", "m", 2, None, NOW)["phase"] == "Pending"


def pod(name: str, ready: bool, phase: str = "Running", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {
            "phase": phase,
            "podIP": "127.0.0.10",
            "conditions": [{"type": "Ready", "status": str(ready)}],
        },
    }


def test_fleet_status_counts_nodes_and_readiness() -> None:
    s = fleet_status(
        pod("f-main", True),
        [pod("f-node-2", False), pod("f-node-1", True, **{"sipfleet.io/draining": "true"})],
        {"f-node-1": 4},
        5,
        None,
        NOW,
    )
    assert s["mainServer"] == {"pod": "f-main", "ip": "127.0.0.10", "ready": True, "updated": True}
    assert [n["name"] for n in s["nodes"]] == ["f-node-1", "f-node-2"]
    assert s["nodes"][0]["draining"] and s["nodes"][0]["members"] == 4
    assert (s["nodeCount"], s["readyNodes"]) == (2, 1)
    assert cond(s, "Ready")["status"] == "True"
    assert cond(s, "Scaling")["status"] == "True"


def test_fleet_without_main_pod_is_not_ready() -> None:
    s = fleet_status(None, [], {}, 1, None, NOW)
    assert cond(s, "Ready")["reason"] == "MainServerNotReady"
    failed = fleet_status(pod("f-main", False, "Failed"), [], {}, 1, None, NOW)
    assert cond(failed, "Degraded")["reason"] == "PodFailed"


def test_status_patch_holds_only_changes() -> None:
    d = Decision(GROUP, 1, History(), routes=ROUTES, members=20, servers=2)
    first = conference_status(d, OBS, 7, None, NOW)
    again = conference_status(d, OBS, 7, first, NOW.replace(minute=5))
    assert status_patch(first, again) == {}
    more = Decision(GROUP, 1, History(), routes=ROUTES, members=21, servers=2)
    changed = status_patch(first, conference_status(more, OBS, 7, first, NOW))
    assert set(changed) == {"members", "conditions"}
    assert status_patch(None, first) == first
