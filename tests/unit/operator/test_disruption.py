"""Graceful exit, operator side: grace period, disruption budget, Pod transitions,
terminating servers in the observations, and the unmoved-members Events."""

from __future__ import annotations

from typing import Any

import pytest
from sipfleet.operator import disruption, pods
from sipfleet.operator.control import dropped_events, unmoved_events
from sipfleet.operator.loadsource import UNMOVED_METRIC, LoadReading, parse_node_members
from sipfleet.operator.models import SipFleetSpec
from sipfleet.operator.observe import server_observation
from sipfleet.operator.planner import Shard
from sipfleet.operator.podevents import PodTransitions

FLEET: dict[str, Any] = {
    "apiVersion": "sipfleet.io/v1alpha1",
    "kind": "SipFleet",
    "metadata": {"name": "small", "namespace": "demo", "uid": "u-1"},
}


def fleet_spec(**spec: Any) -> SipFleetSpec:
    return SipFleetSpec.model_validate({"mainServer": {"domain": "example.com"}, **spec})


@pytest.mark.parametrize(
    ("spec", "grace"),
    [
        ({}, 17),  # 100 members at 50/s = 2 s, plus the 15 s margin
        ({"membersPerNode": 101}, 18),  # rounded up
        ({"membersPerNode": 1000, "disruption": {"membersPerSecond": 20}}, 65),
        ({"disruption": {"gracePeriodSeconds": 7}}, 7),  # the override wins
    ],
)
def test_grace_period_comes_from_the_fleet(spec: dict[str, Any], grace: int) -> None:
    assert fleet_spec(**spec).grace_period_seconds() == grace


def test_server_pods_get_the_grace_period_and_the_drain_rate() -> None:
    spec = fleet_spec(disruption={"membersPerSecond": 25, "gracePeriodSeconds": 40})
    for role in ("main", "node"):
        pod = pods.server_pod(FLEET, "p", role, pods.server_pod_spec("small", spec, role))  # type: ignore[arg-type]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert pod["spec"]["terminationGracePeriodSeconds"] == 40
        assert (env["SIPFLEET_SHUTDOWN_SECONDS"], env["SIPFLEET_DRAIN_RATE"]) == ("40", "25")


def test_disruption_budget_allows_one_server_at_a_time() -> None:
    three = [{"metadata": {"name": n}} for n in ("small-main", "small-node-1", "small-node-2")]
    pdb = disruption.pod_disruption_budget(FLEET, three)
    assert pdb["metadata"]["name"] == "small-servers"
    assert pdb["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pdb["spec"] == {
        "minAvailable": 2,
        "selector": {"matchLabels": {pods.LABEL_FLEET: "small"}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    assert disruption.min_available([]) == 0


def pod(uid: str, *, ready: bool = False, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"p-{uid}", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]}
    return {"metadata": meta, "status": status}


def test_pod_transitions_report_ready_and_terminating_once() -> None:
    seen = PodTransitions()
    assert seen.change(None, pod("a")) == "added"  # kopf's initial listing
    assert seen.change("MODIFIED", pod("a")) is None  # a status write that changes nothing
    assert seen.change("MODIFIED", pod("a", ready=True)) == "ready"
    assert seen.change("MODIFIED", pod("a", ready=True)) is None
    assert seen.change("MODIFIED", pod("a", ready=True, deleting=True)) == "terminating"
    assert seen.change("MODIFIED", pod("a", ready=True, deleting=True)) is None
    assert seen.change("DELETED", pod("a", deleting=True)) == "gone"
    assert seen.change("DELETED", pod("a", deleting=True)) is None
    assert seen.change("ADDED", pod("b", ready=True)) == "ready"  # new and Ready at once


def test_a_terminating_server_that_answers_is_a_ready_draining_leaf() -> None:
    stopping = pod("a", ready=True, deleting=True)
    stopping["metadata"]["name"] = "small-node-1"
    shard = Shard("sip:conf-small-node-1@10.0.0.2:5060", 7, 20)
    reading = LoadReading("scrape", {"small-node-1": 7})
    seen = server_observation(stopping, "node", {"draining": True}, shard, reading)
    assert (seen.ready, seen.draining, seen.terminating, seen.members) == (True, True, True, 7)
    gone = server_observation(stopping, "node", None, None, reading)
    assert (gone.ready, gone.terminating) == (False, True)  # exited: no longer routed
    assert pods.pod_ready(stopping) is False  # for readiness counts it is not Ready


def test_unmoved_counter_is_read_from_a_node_exposition() -> None:
    text = (
        f"# HELP {UNMOVED_METRIC}_total x\n# TYPE {UNMOVED_METRIC}_total counter\n"
        f'{UNMOVED_METRIC}_total{{group="sip:conf@example.com"}} 3.0\n'
        f'{UNMOVED_METRIC}_created{{group="sip:conf@example.com"}} 1.7e9\n'
    )
    assert parse_node_members(text, UNMOVED_METRIC) == {"sip:conf@example.com": 3}


def test_unmoved_members_become_one_warning_event_per_count() -> None:
    events, memory = unmoved_events("sip:c@x", {"n-1": 3}, {})
    assert [(e.type, e.reason) for e in events] == [("Warning", "MembersNotMoved")]
    assert "n-1 stopped before it could move 3 members of sip:c@x" in events[0].message
    again, memory = unmoved_events("sip:c@x", {"n-1": 3}, memory)
    assert again == []  # seen in the next pass too: posted once
    more, memory = unmoved_events("sip:c@x", {"n-1": 5}, memory)
    assert len(more) == 1
    _, memory = unmoved_events("sip:c@x", {}, memory)
    assert memory == {}  # the Pod is gone: a later Pod of that name reports afresh


def test_members_a_server_dropped_become_one_warning_event_per_increase() -> None:
    events, memory = dropped_events("sip:c@x", {"main": 0, "n-1": 2}, {})
    assert [(e.type, e.reason) for e in events] == [("Warning", "MembersDropped")]
    assert "n-1 ended the sessions of 2 members of sip:c@x without moving them" in (
        events[0].message
    )
    again, memory = dropped_events("sip:c@x", {"n-1": 2}, memory)
    assert again == []  # the same count in the next pass: posted once
    more, memory = dropped_events("sip:c@x", {"n-1": 3}, memory)
    assert ["of 1 members" in e.message for e in more] == [True]
    # A new Pod of that name starts from 0: remembered, then reported as it grows.
    _, memory = dropped_events("sip:c@x", {"n-1": 0}, memory)
    grown, _ = dropped_events("sip:c@x", {"n-1": 1}, memory)
    assert len(grown) == 1
