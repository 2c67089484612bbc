"""Observation assembly from Pods, /v1/state answers, transfers and load readings."""

from __future__ import annotations

from typing import Any

from admin_fakes import node_state, shard, transfer
from sipfleet.node.admin_types import NodeState
from sipfleet.operator import pods as podlib
from sipfleet.operator import rollout
from sipfleet.operator.loadsource import LoadReading
from sipfleet.operator.observe import (
    FleetView,
    created_at,
    in_flight,
    observe,
    server_observation,
    shards_by_group,
)
from sipfleet.operator.planner import ServerObservation

GROUP = "sip:conf3@example.com"


def pod(
    name: str, *, ready: bool = True, phase: str = "Running", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": labels or {},
            "creationTimestamp": "2026-01-01T00:00:10Z",
        },
        "status": {
            "phase": phase,
            "podIP": "127.0.0.11",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def state(members: int | None, *, draining: bool = False) -> NodeState:
    shards = () if members is None else (shard(GROUP, members, uri="sip:conf3-x@127.0.0.11"),)
    return node_state(*shards, generation=4, draining=draining)


def observe_one(
    p: dict[str, Any], role: str, st: NodeState | None, load: LoadReading
) -> ServerObservation:
    return server_observation(p, role, st, shards_by_group(st).get(GROUP), load)  # type: ignore[arg-type]


def test_shards_by_group_finds_the_group() -> None:
    s = shards_by_group(state(5))[GROUP]
    assert (s.uri, s.members, s.capacity) == ("sip:conf3-x@127.0.0.11", 5, 20)
    assert "sip:other@example.com" not in shards_by_group(state(5))
    assert shards_by_group(None) == {}


def test_fresh_load_sample_gives_the_members() -> None:
    load = LoadReading("prometheus", {"n1": 9})
    obs = observe_one(pod("n1"), "node", state(5), load)
    assert obs.metrics == "fresh" and obs.members == 9 and obs.ready
    assert obs.created_at == created_at(pod("n1")) > 0


def test_missing_sample_falls_back_to_state_and_says_missing() -> None:
    load = LoadReading("scrape", {}, frozenset({"n1"}))
    obs = observe_one(pod("n1"), "node", state(5), load)
    assert obs.metrics == "missing" and obs.members == 5


def test_failed_source_marks_stale() -> None:
    load = LoadReading("prometheus", {}, frozenset({"n1"}), error="connection refused")
    obs = observe_one(pod("n1"), "node", state(5), load)
    assert obs.metrics == "stale"


def test_server_without_the_group_is_fresh_and_empty() -> None:
    obs = observe_one(pod("n1"), "node", state(None), LoadReading("scrape"))
    assert obs.metrics == "fresh" and obs.shard is None and obs.members == 0


def test_unreachable_server_is_not_ready_and_missing() -> None:
    obs = observe_one(pod("n1"), "node", None, LoadReading("scrape"))
    assert not obs.ready and obs.metrics == "missing" and obs.shard is None


def test_draining_node_never_looks_emptier_than_its_state() -> None:
    load = LoadReading("prometheus", {"n1": 0})
    labelled = pod("n1", labels={podlib.LABEL_DRAINING: "true"})
    obs = observe_one(labelled, "node", state(3), load)
    assert obs.draining and obs.members == 3
    reported = observe_one(pod("n1"), "node", state(2, draining=True), load)
    assert reported.draining and reported.members == 2


def test_pending_pod_phase_passes_through() -> None:
    obs = observe_one(pod("n1", ready=False, phase="Pending"), "node", None, LoadReading("scrape"))
    assert obs.phase == "Pending" and obs.alive
    odd = observe_one(pod("n1", phase="Weird"), "node", None, LoadReading("s"))
    assert odd.phase == "Unknown"


def test_in_flight_keeps_running_transfers_of_the_group() -> None:
    listings = {
        "main": [
            transfer(GROUP, "sip:c-1@h", 10, moved=3, failed=1),
            transfer(GROUP, "sip:c-1@h", 5, moved=5, state="done"),
            transfer("sip:other@x", "sip:c-1@h", 5),
        ],
        "n2": [transfer(GROUP, "sip:unknown@h", 2)],
    }
    flights = in_flight(listings, GROUP, {"sip:c-1@h": "n1"})
    assert [(f.source, f.target, f.remaining) for f in flights] == [
        ("main", "n1", 6),
        ("n2", "sip:unknown@h", 2),
    ]


def test_the_main_server_is_outdated_against_its_own_digest() -> None:
    load = LoadReading("prometheus", {"f-main": 3})
    built = pod("f-main")
    built["metadata"]["annotations"] = {rollout.TEMPLATE_HASH: "main-1"}
    st = state(3)
    old = server_observation(built, "main", st, shards_by_group(st).get(GROUP), load, "main-2")
    same = server_observation(built, "main", st, shards_by_group(st).get(GROUP), load, "main-1")
    assert (old.outdated, same.outdated) == (True, False)


async def test_other_conferences_nodes_must_be_settled_for_the_main_server_to_roll() -> None:
    def node_pod(
        name: str, conference: str, template: str, *, ready: bool = True, draining: bool = False
    ) -> dict[str, Any]:
        labels = {podlib.LABEL_CONFERENCE: conference}
        if draining:
            labels[podlib.LABEL_DRAINING] = "true"
        p = pod(name, labels=labels, ready=ready)
        p["metadata"]["annotations"] = {rollout.TEMPLATE_HASH: template}
        return p

    def view(*nodes: dict[str, Any]) -> FleetView:
        return FleetView(0.0, pod("f-main"), nodes, {}, {}, {}, {}, {}, {})

    mine = node_pod("f-node-1", "c1", "old")
    settled = view(mine, node_pod("f-node-2", "c2", "new"))
    assert (await observe(settled, "c1", GROUP, None, "new")).others_settled
    for other in (
        node_pod("f-node-2", "c2", "old"),
        node_pod("f-node-2", "c2", "new", ready=False),
        node_pod("f-node-2", "c2", "new", draining=True),
    ):
        assert not (await observe(view(mine, other), "c1", GROUP, None, "new")).others_settled
