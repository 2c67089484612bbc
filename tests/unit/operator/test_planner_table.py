"""Planner decisions, case by case (the Agones fleetautoscaler table style)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from planner_sim import GROUP, apply, main, make_spec, node, observe
from sipfleet.operator.planner import (
    STARTUP_GRACE_SECONDS,
    History,
    InFlightTransfer,
    Limit,
    Recommendation,
    Route,
    plan,
    recommend_nodes,
)

NOW = 1000.0


def settled(nodes: int, since: float = 0.0) -> History:
    """History that has recommended ``nodes`` since ``since``, with no recent scaling."""
    return History(started=since, recommendations=(Recommendation(since, nodes),))


@pytest.mark.parametrize(
    ("members", "capacity", "target", "nodes"),
    [
        (0, 20, 0.8, 0),  # the main server alone
        (16, 20, 0.8, 0),  # exactly at target load
        (17, 20, 0.8, 1),  # just over: a second server
        (32, 20, 0.8, 1),
        (33, 20, 0.8, 2),
        (100, 20, 0.8, 6),  # 16 per server -> 7 servers
        (100, 20, 1.0, 4),
        (1, 1, 0.5, 0),  # at least one member per server at any load
        (2, 1, 0.5, 1),
    ],
)
def test_recommend_nodes_keeps_members_at_target_load(
    members: int, capacity: int, target: float, nodes: int
) -> None:
    spec = make_spec(capacity, target_load=target, high_watermark=1.0)
    assert recommend_nodes(spec, members) == (nodes, frozenset())


@pytest.mark.parametrize(
    ("kwargs", "members", "nodes", "limits"),
    [
        ({"max_nodes": 3}, 100, 3, {Limit.MAX_NODES}),
        ({"max_nodes": 5, "other_nodes": 4}, 100, 1, {Limit.MAX_NODES}),
        ({"max_nodes": 5, "other_nodes": 9}, 100, 0, {Limit.MAX_NODES}),
        ({"min_nodes": 2}, 0, 2, set()),
        ({"max_members": 40}, 100, 2, {Limit.MAX_MEMBERS}),  # 40 members -> 3 servers
        ({"max_members": 40, "max_nodes": 1}, 100, 1, {Limit.MAX_MEMBERS, Limit.MAX_NODES}),
    ],
)
def test_recommend_nodes_bounds(
    kwargs: dict[str, Any], members: int, nodes: int, limits: set[Limit]
) -> None:
    assert recommend_nodes(make_spec(20, **kwargs), members) == (nodes, frozenset(limits))


def test_new_conference_gets_its_shard_on_the_main_server_first() -> None:
    d = plan(make_spec(), observe(main(None)), History(), NOW)
    assert [(p.server, p.group, p.capacity) for p in d.create_shards] == [("main", GROUP, 20)]
    assert d.create_nodes == 0
    assert d.routes == ()
    assert d.phase == "Pending"
    assert d.kind == "place"


def test_steady_group_on_main_only() -> None:
    d = plan(make_spec(), observe(main(10)), History(), NOW)
    assert not d.has_actions
    assert d.routes == (Route("main", "sip:conf3-main@main.local", "active", 10),)
    assert (d.kind, d.phase, d.members, d.servers) == ("steady", "Running", 10, 1)
    assert d.reason == "steady: 10 members on 1 servers"


def test_scale_out_when_load_crosses_target() -> None:
    d = plan(make_spec(), observe(main(17)), History(), NOW)
    assert d.create_nodes == 1
    assert d.kind == "scale-out"
    assert "17 members need 1 nodes" in d.reason
    assert d.history.last_scale == NOW
    assert d.phase == "Scaling"


def test_scale_out_is_bounded_by_the_step() -> None:
    d = plan(make_spec(max_nodes_per_step=2), observe(main(100)), History(), NOW)
    assert (d.desired_nodes, d.create_nodes) == (6, 2)
    assert Limit.STEP in d.limited


def test_scale_out_is_bounded_by_max_nodes_counting_draining_pods() -> None:
    obs = observe(main(20), node("a", 20), node("b", 5, draining=True))
    d = plan(make_spec(max_nodes=2, max_nodes_per_step=5), obs, History(), NOW)
    assert d.desired_nodes == 2
    assert d.create_nodes == 0  # a and b are 2 Pods; b counts until it is deleted
    assert Limit.MAX_NODES in d.limited
    assert "node budget 2 reached" in d.reason


def test_deleting_a_pod_frees_budget_in_the_same_step() -> None:
    obs = observe(main(20), node("a", 20), node("b", 0, draining=True))
    d = plan(make_spec(max_nodes=2, max_nodes_per_step=5), obs, History(), NOW)
    assert [a.server for a in d.delete] == ["b"]
    assert d.create_nodes == 1


def test_starting_nodes_count_toward_the_target_and_the_step() -> None:
    starting = node("a", None, ready=False, phase="Pending", created_at=NOW - 5)
    d = plan(make_spec(max_nodes_per_step=1), observe(main(30), starting), History(), NOW)
    assert d.create_nodes == 0  # 30 members need 1 node, and it is starting
    d = plan(make_spec(max_nodes_per_step=1), observe(main(60), starting), History(), NOW)
    assert d.create_nodes == 0  # more are needed, but the step is still in progress
    assert Limit.STEP in d.limited
    assert d.pending_nodes == 1


def test_a_node_stuck_not_ready_stops_blocking_and_degrades() -> None:
    stuck = node("a", None, ready=False, created_at=NOW - STARTUP_GRACE_SECONDS - 1)
    d = plan(make_spec(max_nodes_per_step=1), observe(main(60), stuck), History(), NOW)
    assert d.create_nodes == 1
    assert any("a not ready after" in p for p in d.degraded)
    assert d.phase == "Degraded"


def test_cooldown_holds_scale_out() -> None:
    history = History(started=0.0, last_scale=NOW - 5)
    d = plan(make_spec(cooldown_seconds=10), observe(main(40)), history, NOW)
    assert d.create_nodes == 0
    assert Limit.COOLDOWN in d.limited
    assert "cooldown" in d.reason
    d = plan(make_spec(cooldown_seconds=10), observe(main(40)), history, NOW + 5)
    assert d.create_nodes == 2


def test_scale_up_window_scales_to_the_lowest_recent_recommendation() -> None:
    history = History(
        started=0.0,
        recommendations=(Recommendation(NOW - 20, 1), Recommendation(NOW - 5, 3)),
    )
    spec = make_spec(scale_up_stabilization_seconds=30, max_nodes_per_step=10)
    d = plan(spec, observe(main(100)), history, NOW)
    assert (d.desired_nodes, d.create_nodes) == (6, 1)
    assert Limit.STABILIZING in d.limited
    d = plan(
        make_spec(scale_up_stabilization_seconds=10, max_nodes_per_step=10),
        observe(main(100)),
        history,
        NOW,
    )
    assert d.create_nodes == 3


def test_scale_in_drains_the_emptiest_node_after_the_window() -> None:
    spec = make_spec(scale_down_stabilization_seconds=60)
    obs = observe(main(10), node("a", 3), node("b", 1), node("c", 2))
    d = plan(spec, obs, settled(0, since=NOW - 61), NOW)
    assert [a.server for a in d.drain] == ["b", "c"]  # step 2, emptiest first
    assert d.kind == "scale-in"
    assert d.delete == ()  # never in the same step as the drain
    assert "drain b (1 members)" in d.reason
    # The drained nodes' members move at once, onto servers that stay.
    assert {(t.source, t.target) for t in d.transfers} <= {
        ("b", "main"),
        ("b", "a"),
        ("c", "main"),
        ("c", "a"),
    }
    assert sum(t.count for t in d.transfers) == 3
    assert [r.server for r in d.routes if r.state == "draining"] == ["b", "c"]


def test_scale_in_never_drains_a_node_members_are_moving_to() -> None:
    """b is draining and moving 3 members to c, whose own members left: c looks
    emptiest, but a member arriving at a draining c would be turned away."""
    obs = observe(
        main(8),
        node("a", 2),
        node("b", 3, draining=True),
        node("c", 0),
        transfers=(InFlightTransfer("b", "c", 3),),
    )
    d = plan(make_spec(max_nodes_per_step=2), obs, settled(0), NOW)
    assert [a.server for a in d.drain] == ["a"]
    # With c the only candidate, the step waits and says why.
    obs = replace(obs, servers=tuple(s for s in obs.servers if s.name != "a"))
    d = plan(make_spec(max_nodes_per_step=2), obs, settled(0), NOW)
    assert d.drain == ()
    assert "drained once their arrivals are confirmed" in d.reason
    # Once the moves are confirmed, c is a candidate again.
    done = observe(main(8), node("b", 0, draining=True), node("c", 3))
    d = plan(make_spec(max_nodes_per_step=2), done, settled(0), NOW)
    assert [a.server for a in d.drain] == ["c"]


def test_scale_in_prefers_a_node_that_never_became_ready() -> None:
    obs = observe(main(0), node("a", 0), node("b", None, ready=False, phase="Pending"))
    d = plan(make_spec(max_nodes_per_step=1), obs, settled(0), NOW)
    assert [a.server for a in d.drain] == ["b"]


def test_scale_in_waits_for_the_window() -> None:
    spec = make_spec(scale_down_stabilization_seconds=60)
    obs = observe(main(10), node("a", 0))
    d = plan(spec, obs, settled(0, since=NOW - 30), NOW)  # started 30 s ago
    assert d.drain == ()
    assert Limit.STABILIZING in d.limited
    busy = History(started=0.0, recommendations=(Recommendation(NOW - 30, 1),))
    d = plan(spec, obs, busy, NOW)  # a higher recommendation inside the window
    assert d.drain == ()
    assert Limit.STABILIZING in d.limited


def test_a_fresh_history_never_scales_in_at_once() -> None:
    spec = make_spec(scale_down_stabilization_seconds=60)
    d = plan(spec, observe(main(0), node("a", 0)), History(), NOW)
    assert d.drain == ()
    assert d.history.started == NOW


@pytest.mark.parametrize("freshness", ["stale", "missing"])
def test_stale_metrics_block_scale_in_and_say_why(freshness: str) -> None:
    obs = observe(main(0), node("a", 0), node("b", 0, metrics=freshness))  # type: ignore[arg-type]
    d = plan(make_spec(), obs, settled(0), NOW)
    assert d.drain == ()
    assert Limit.METRICS_STALE in d.limited
    assert "metrics stale or missing for b" in d.reason
    assert d.phase == "Degraded"


def test_stale_metrics_still_allow_scale_out_from_the_servers_counts() -> None:
    obs = observe(main(20, metrics="stale"), node("a", 20, metrics="missing"))
    d = plan(make_spec(), obs, History(), NOW)
    assert d.create_nodes == 1  # 40 members need 3 servers


def test_stale_metrics_on_a_starting_pod_do_not_block_scale_in() -> None:
    obs = observe(
        main(0), node("a", 0), node("b", None, ready=False, phase="Pending", metrics="missing")
    )
    d = plan(make_spec(), obs, settled(0), NOW)
    assert len(d.drain) == 2


def test_empty_draining_node_is_deleted() -> None:
    d = plan(make_spec(), observe(main(5), node("a", 0, draining=True)), History(), NOW)
    assert [(a.server, a.reason) for a in d.delete] == [("a", "delete a: drained and empty")]
    assert d.routes == (Route("main", "sip:conf3-main@main.local", "active", 15),)


@pytest.mark.parametrize(
    "server",
    [
        node("a", 3, draining=True),  # members left
        node("a", 0, draining=True, metrics="stale"),  # zero, but not trustworthy
        node("a", 0, draining=True, ready=False),  # cannot ask it
        node("a", 0),  # empty but not draining: a join may be on its way
    ],
)
def test_a_node_that_may_have_members_is_not_deleted(server: object) -> None:
    d = plan(make_spec(), observe(main(5), server), History(), NOW)  # type: ignore[arg-type]
    assert d.delete == ()


def test_in_flight_transfers_keep_a_node_alive_and_are_not_repeated() -> None:
    obs = observe(
        main(0),
        node("a", 4, draining=True),
        transfers=(InFlightTransfer("a", "main", 4),),
    )
    d = plan(make_spec(), obs, History(), NOW)
    assert d.delete == ()
    assert d.transfers == ()
    assert d.routes[0].free == 16  # 4 are on their way to main


def test_failed_pod_is_deleted_and_degrades() -> None:
    obs = observe(main(5), node("a", None, ready=False, phase="Failed"))
    d = plan(make_spec(min_nodes=1), obs, History(), NOW)
    assert [a.reason for a in d.delete] == ["delete a: pod Failed"]
    assert d.create_nodes == 1  # replaced in the same step
    assert "a pod Failed" in d.degraded


def test_draining_node_members_move_to_servers_with_room() -> None:
    obs = observe(main(10), node("a", 12), node("b", 8, draining=True))
    d = plan(make_spec(rate=40), obs, History(), NOW)
    moves = sorted((t.source, t.target, t.count) for t in d.transfers)
    # room at target load (16): main 6, a 4 -> 8 members fit
    assert moves == [("b", "a", 2), ("b", "main", 6)]
    assert all(t.method == "refer" for t in d.transfers)
    assert all(t.rate == 20.0 for t in d.transfers)  # 40/s shared by two transfers
    assert {t.target_uri for t in d.transfers} == {
        "sip:conf3-main@main.local",
        "sip:conf3-a@a.local",
    }


def test_members_over_the_high_watermark_move_down_to_target_load() -> None:
    obs = observe(main(20), node("a", 2))
    d = plan(make_spec(high_watermark=0.9, mode="refer-to-server"), obs, History(), NOW)
    assert [(t.source, t.target, t.count, t.method) for t in d.transfers] == [
        ("main", "a", 4, "refer-to-server")
    ]
    assert "above high watermark (20/20)" in d.transfers[0].reason


def test_transfer_waits_for_room_and_says_so() -> None:
    obs = observe(main(16), node("a", 8, draining=True))
    d = plan(make_spec(), obs, History(), NOW)
    assert d.transfers == ()
    assert "8 members on a wait for room (draining)" in d.notes


def test_redirect_only_never_transfers() -> None:
    obs = observe(main(20), node("a", 0), node("b", 5, draining=True))
    d = plan(make_spec(mode="redirect-only"), obs, History(), NOW)
    assert d.transfers == ()


def test_routes_main_first_then_oldest_active_then_draining() -> None:
    obs = observe(
        node("young", 5, created_at=300),
        node("old", 15, created_at=100),
        node("leaving", 2, draining=True, created_at=50),
        node("down", 0, ready=False, created_at=0),
        main(16),
    )
    d = plan(make_spec(), obs, History(), NOW)
    assert [(r.server, r.state, r.free) for r in d.routes] == [
        ("main", "active", 4),
        ("old", "active", 5),
        ("young", "active", 13),  # the 2 members of "leaving" go where most room is
        ("leaving", "draining", 0),
    ]
    assert d.servers == 4


def test_shards_are_placed_on_ready_nodes_only() -> None:
    obs = observe(
        main(5),
        node("a", None),
        node("b", None, ready=False),
        node("c", None, draining=True),
    )
    d = plan(make_spec(min_nodes=3), obs, History(), NOW)
    assert [p.server for p in d.create_shards] == ["a"]


def test_main_not_ready_is_degraded_and_not_routed() -> None:
    d = plan(make_spec(min_nodes=1), observe(main(5, ready=False), node("a", 3)), History(), NOW)
    assert d.routes == ()  # a table without its root would cut the tree
    assert d.degraded == ("main server main not ready",)
    assert d.phase == "Degraded"
    d = plan(make_spec(), observe(), History(), NOW)
    assert d.degraded == ("main server not found",)
    assert d.phase == "Pending"


def test_history_forgets_what_no_window_needs() -> None:
    spec = make_spec(scale_up_stabilization_seconds=10, scale_down_stabilization_seconds=30)
    history = History(
        started=0.0,
        recommendations=tuple(
            Recommendation(t, 0) for t in (NOW - 100, NOW - 31, NOW - 30, NOW - 1)
        ),
    )
    d = plan(spec, observe(main(0)), history, NOW)
    assert [r.time for r in d.history.recommendations] == [NOW - 30, NOW - 1, NOW]
    assert d.history.started == 0.0


def test_replanning_after_apply_is_a_no_op() -> None:
    obs = observe(main(60), node("a", 0, draining=True), node("b", 10))
    spec = make_spec(max_nodes_per_step=3)
    d1 = plan(spec, obs, History(), NOW)
    assert d1.create_nodes and d1.transfers and d1.delete
    d2 = plan(spec, apply(obs, d1, NOW), d1.history, NOW)
    assert not d2.has_actions


# ---- terminating nodes (Kubernetes deletes, evicts or drains a Pod) ----------------------


def test_a_terminating_node_is_replaced_at_once_and_left_to_move_its_members() -> None:
    """30 members at 10 per server need main + 2 nodes; b is stopping: not capacity."""
    obs = observe(main(10), node("a", 10), node("b", 10, terminating=True))
    history = History(started=0.0, recommendations=(), last_scale=NOW - 1)  # cooling down
    spec = make_spec(target_load=0.5, cooldown_seconds=60, scale_up_stabilization_seconds=60)
    d = plan(spec, obs, history, NOW)
    assert d.create_nodes == 1  # no cooldown, no window: the load did not change
    assert d.create_reason.startswith("replace 1 terminating (b)")
    assert d.history.last_scale == NOW - 1  # a replacement is no scale step
    assert d.transfers == ()  # b moves its own members (graceful exit)
    assert d.delete == ()  # Kubernetes is deleting b already
    assert [(r.server, r.state) for r in d.routes] == [
        ("main", "active"),
        ("a", "active"),
        ("b", "draining"),  # still routed: group messages reach b's members
    ]
    assert (d.terminating_nodes, d.phase) == (1, "Scaling")
    assert "b terminating: moving its members away" in d.reason


def test_a_terminating_node_is_not_replaced_when_the_rest_has_room() -> None:
    obs = observe(main(5), node("a", 5), node("b", 5, terminating=True))
    d = plan(make_spec(target_load=0.5), obs, settled(1), NOW)
    assert d.desired_nodes == 1  # 15 members, 10 per server
    assert d.create_nodes == 0


def test_a_terminating_node_does_not_count_against_max_nodes() -> None:
    obs = observe(main(10), node("a", 10), node("b", 10, terminating=True))
    d = plan(make_spec(target_load=0.5, max_nodes=2), obs, settled(2), NOW)
    assert d.create_nodes == 1  # a + the replacement = 2 Pods that stay
    assert Limit.MAX_NODES not in d.limited


def test_a_replacement_counts_against_max_nodes_like_any_pod() -> None:
    obs = observe(main(10), node("a", 10), node("c", 0), node("b", 10, terminating=True))
    d = plan(make_spec(target_load=0.5, max_nodes=2, min_nodes=2), obs, settled(2), NOW)
    assert d.create_nodes == 0  # a and c already fill the budget and the need


def test_replanning_after_the_replacement_was_created_creates_no_other() -> None:
    obs = observe(main(10), node("a", 10), node("b", 10, terminating=True))
    spec = make_spec(target_load=0.5)
    d1 = plan(spec, obs, settled(2), NOW)
    d2 = plan(spec, apply(obs, d1, NOW), d1.history, NOW + 1)
    assert (d1.create_nodes, d2.create_nodes) == (1, 0)
    assert d2.pending_nodes == 1


def test_a_terminating_node_that_no_longer_answers_is_not_routed() -> None:
    gone = node("b", None, ready=False, metrics="missing", terminating=True)
    d = plan(make_spec(target_load=0.5), observe(main(10), node("a", 10), gone), settled(1), NOW)
    assert [r.server for r in d.routes] == ["main", "a"]
    assert d.delete == ()


def test_a_terminating_node_is_no_scale_in_step_in_progress() -> None:
    """A stopping node does not hold a scale-in of the others (it is not the operator's)."""
    obs = observe(main(2), node("a", 0), node("c", 0), node("b", 3, terminating=True))
    d = plan(make_spec(target_load=0.5, max_nodes_per_step=1), obs, settled(0), NOW)
    assert [a.server for a in d.drain] == ["a"]


# ---- rolling update of the node template ---------------------------------------------------


def test_a_rolling_update_stops_one_outdated_node_and_replaces_it_at_once() -> None:
    obs = observe(main(10), node("a", 8, outdated=True), node("b", 3, outdated=True), node("c", 10))
    d = plan(make_spec(target_load=0.5), obs, settled(3), NOW)
    assert [a.server for a in d.roll] == ["b"]  # the emptiest outdated node first
    assert d.create_nodes == 1 and "replace 1 terminating (b)" in d.create_reason
    assert (d.kind, d.phase) == ("rollout", "Scaling")
    assert "roll b (3 members) to the new node template" in d.reason
    assert [r.server for r in d.routes if r.state == "draining"] == ["b"]
    assert d.transfers == ()  # b moves its own members once stopped


def test_a_rolling_update_waits_for_the_previous_step() -> None:
    spec = make_spec(target_load=0.5)
    obs = observe(main(10), node("a", 8, outdated=True), node("b", 3, outdated=True))
    d1 = plan(spec, obs, settled(2), NOW)
    assert [a.server for a in d1.roll] == ["b"]
    after = apply(obs, d1, NOW)  # b terminating, its replacement starting
    d2 = plan(spec, after, d1.history, NOW + 1)
    assert (d2.roll, d2.create_nodes) == ((), 0)
    started = observe(
        main(10), node("a", 8, outdated=True), node("b", 3, terminating=True), node("n", 0)
    )
    assert plan(spec, started, d1.history, NOW + 2).roll == ()  # b still stopping
    done = observe(main(10), node("a", 8, outdated=True), node("n", 3))
    assert [a.server for a in plan(spec, done, d1.history, NOW + 3).roll] == ["a"]


def test_max_unavailable_rolls_several_nodes_at_once() -> None:
    outdated = [node(n, 10, outdated=True) for n in ("a", "b", "c")]
    d = plan(
        make_spec(target_load=0.5, max_unavailable=2), observe(main(10), *outdated), settled(3), NOW
    )
    assert sorted(a.server for a in d.roll) == ["a", "b"]
    assert d.create_nodes == 2


def test_no_rolling_update_on_stale_metrics_or_while_draining() -> None:
    stale = observe(main(10, metrics="stale"), node("a", 8, outdated=True))
    assert plan(make_spec(target_load=0.5), stale, settled(1), NOW).roll == ()
    draining = observe(main(10), node("a", 8, outdated=True), node("b", 2, draining=True))
    assert plan(make_spec(target_load=0.5), draining, settled(1), NOW).roll == ()


def test_no_rolling_update_while_the_main_server_is_down() -> None:
    obs = observe(main(10, ready=False), node("a", 8, outdated=True), node("b", 8))
    assert plan(make_spec(target_load=0.5), obs, settled(2), NOW).roll == ()


# ---- rolling update of the main server ------------------------------------------------------


def test_the_main_server_waits_while_any_node_is_outdated() -> None:
    obs = observe(main(10, outdated=True), node("a", 8, outdated=True), node("b", 3))
    d = plan(make_spec(target_load=0.5), obs, settled(2), NOW)
    assert [a.server for a in d.roll] == ["a"] and d.roll_main is None


def test_the_main_server_is_rolled_alone_once_every_node_is_updated_and_ready() -> None:
    spec = make_spec(target_load=0.5)
    obs = observe(main(6, outdated=True), node("a", 5), node("b", 3))
    d = plan(spec, obs, settled(2), NOW)
    assert d.roll_main is not None and d.roll_main.server == "main"
    assert (d.roll, d.drain, d.create_nodes, d.transfers) == ((), (), 0, ())
    assert (d.kind, d.phase) == ("rollout", "Scaling")
    assert "roll main server main (6 members) to the new template" in d.reason
    # Applied: the main server drains as the root of the tree (a draining
    # entry first), its members go to the nodes, nothing is rolled twice.
    after = apply(obs, d, NOW)
    d2 = plan(spec, after, d.history, NOW + 1)
    assert d2.roll_main is None and d2.roll == ()
    assert (d2.routes[0].server, d2.routes[0].state) == ("main", "draining")


@pytest.mark.parametrize(
    ("nodes", "others_settled", "waits_for"),
    [
        (
            [node("a", 5), node("b", 0, ready=False, phase="Pending", created_at=NOW)],
            True,
            "nodes starting",
        ),
        ([node("a", 5), node("b", 2, draining=True)], True, "nodes draining"),
        ([node("a", 5), node("b", 2, terminating=True)], True, "nodes draining or stopping"),
        ([node("a", 5), node("b", 2, metrics="stale")], True, "fresh metrics"),
        ([node("a", 5), node("b", None)], True, "shards on new nodes"),
        ([node("a", 5), node("b", 3)], False, ""),
    ],
)
def test_the_main_server_waits_for_whatever_is_in_flight(
    nodes: list[Any], others_settled: bool, waits_for: str
) -> None:
    spec = make_spec(target_load=0.5, others_settled=others_settled)
    d = plan(spec, observe(main(6, outdated=True), *nodes), settled(2), NOW)
    assert d.roll_main is None
    assert waits_for in " ".join(d.notes)


def test_the_main_server_waits_for_a_transfer_in_flight() -> None:
    moving = (InFlightTransfer("a", "b", 2),)
    obs = observe(main(6, outdated=True), node("a", 5), node("b", 3), transfers=moving)
    d = plan(make_spec(target_load=0.5), obs, settled(2), NOW)
    assert d.roll_main is None and "waits for transfers" in d.reason


def test_the_main_server_waits_for_room_on_the_nodes_and_asks_for_it() -> None:
    """16 members on the main server, two nodes with 2 free each at the high
    watermark: a node more is started (44 members need 3 servers, all nodes
    once the main server is away), and the main server is rolled once that
    node has room."""
    spec = make_spec(target_load=0.8, high_watermark=0.8)
    obs = observe(main(16, outdated=True), node("a", 14), node("b", 14))
    assert plan(spec, obs, settled(2), NOW).desired_nodes == 3
    d = plan(spec, obs, settled(2), NOW)
    assert d.roll_main is None and d.create_nodes == 1
    assert "main server main waits for new nodes" in d.reason
    starting = apply(obs, d, NOW)
    d2 = plan(spec, starting, d.history, NOW + 1)
    assert d2.roll_main is None and "waits for nodes starting" in d2.reason
    grown = observe(main(16, outdated=True), node("a", 14), node("b", 14), node("c", 0))
    d3 = plan(spec, grown, d2.history, NOW + 2)
    assert d3.roll_main is not None and d3.drain == ()
    # No node more allowed (maxNodes): it waits, saying for what.
    short = observe(main(16, outdated=True), node("a", 14), node("b", 14), node("c", 13))
    d4 = plan(replace(spec, max_nodes=3), short, d2.history, NOW + 2)
    assert d4.roll_main is None
    assert "waits for room for its 16 members on the nodes (7 free)" in d4.reason


def test_a_main_server_stopping_keeps_room_for_its_members() -> None:
    """Kubernetes stopping the main server (any reason): the nodes must take its members."""
    obs = observe(main(40, terminating=True), node("a", 12), node("b", 12))
    d = plan(make_spec(target_load=0.8, high_watermark=0.8), obs, settled(2), NOW)
    assert d.create_nodes == 2 and d.roll_main is None


def test_a_group_on_the_main_server_alone_gets_a_node_before_the_main_server_rolls() -> None:
    obs = observe(main(5, outdated=True))
    d = plan(make_spec(target_load=0.5), obs, settled(0), NOW)
    assert d.roll_main is None and d.create_nodes == 1


def test_a_fleet_can_keep_its_main_server_out_of_rollouts() -> None:
    spec = replace(make_spec(target_load=0.5), roll_main_server=False)
    d = plan(spec, observe(main(6, outdated=True), node("a", 5), node("b", 3)), settled(2), NOW)
    assert d.roll_main is None and d.create_nodes == 0 and "main server" not in d.reason
