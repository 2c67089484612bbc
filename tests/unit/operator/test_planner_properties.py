"""Safety properties of the planner over generated worlds (hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from planner_sim import apply, make_spec, shard
from sipfleet.operator.planner import (
    Decision,
    History,
    InFlightTransfer,
    Observations,
    PlanSpec,
    Recommendation,
    ServerObservation,
    plan,
)

NOW = 10_000.0


@st.composite
def specs(draw: st.DrawFn) -> PlanSpec:
    target = draw(st.sampled_from([0.5, 0.7, 0.8, 1.0]))
    max_nodes = draw(st.integers(0, 8))
    return make_spec(
        draw(st.integers(1, 40)),
        target_load=target,
        high_watermark=draw(st.sampled_from([h for h in (0.8, 0.9, 1.0) if h >= target])),
        max_nodes=max_nodes,
        min_nodes=draw(st.integers(0, max_nodes)),
        other_nodes=draw(st.integers(0, 3)),
        max_members=draw(st.none() | st.integers(1, 300)),
        mode=draw(st.sampled_from(["redirect-only", "refer", "refer-to-server"])),
        scale_up_stabilization_seconds=draw(st.sampled_from([0, 10])),
        scale_down_stabilization_seconds=draw(st.sampled_from([0, 30, 60])),
        cooldown_seconds=draw(st.sampled_from([0, 10])),
        max_nodes_per_step=draw(st.integers(1, 3)),
        max_unavailable=draw(st.integers(1, 2)),
        others_settled=draw(st.booleans()),
    )


@st.composite
def servers(draw: st.DrawFn, name: str, role: str, capacity: int) -> ServerObservation:
    phase = draw(st.sampled_from(["Running"] * 6 + ["Pending", "Failed", "Unknown"]))
    started = phase != "Pending"
    members = draw(st.none() | st.integers(0, 2 * capacity)) if started else None
    terminating = draw(st.integers(0, 4)) == 0
    return ServerObservation(
        name=name,
        role=role,  # type: ignore[arg-type]
        ready=started and phase != "Failed" and draw(st.booleans()),
        phase=phase,  # type: ignore[arg-type]
        draining=terminating or (role == "node" and draw(st.booleans())),
        shard=None if members is None else shard(name, members, capacity),
        metrics=draw(st.sampled_from(["fresh"] * 4 + ["stale", "missing"])),
        created_at=draw(st.floats(NOW - 300, NOW)),
        terminating=terminating,
        outdated=draw(st.booleans()),
    )


@st.composite
def observations(draw: st.DrawFn, spec: PlanSpec) -> Observations:
    capacity = spec.members_per_server
    found = [draw(servers("main", "main", capacity))] if draw(st.booleans()) else []
    count = draw(st.integers(0, 6))
    found += [draw(servers(f"n{i}", "node", capacity)) for i in range(count)]
    transfers = []
    for source in found:
        others = [s.name for s in found if s.name != source.name]
        if source.members and others and draw(st.booleans()):
            target = draw(st.sampled_from(others))
            transfers.append(
                InFlightTransfer(source.name, target, draw(st.integers(1, source.members)))
            )
    return Observations(tuple(found), tuple(transfers))


@st.composite
def histories(draw: st.DrawFn) -> History:
    if not draw(st.booleans()):
        return History()
    times = sorted(draw(st.lists(st.floats(NOW - 100, NOW - 1), max_size=6)))
    return History(
        started=draw(st.floats(NOW - 200, times[0] if times else NOW)),
        recommendations=tuple(Recommendation(t, draw(st.integers(0, 8))) for t in times),
        last_scale=draw(st.none() | st.floats(NOW - 50, NOW)),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[PlanSpec, Observations, History]:
    spec = draw(specs())
    return spec, draw(observations(spec)), draw(histories())


def by_name(obs: Observations) -> dict[str, ServerObservation]:
    return {s.name: s for s in obs.servers}


@settings(max_examples=300, deadline=None)
@given(cases())
def test_never_deletes_a_server_with_members_or_the_main_server(
    case: tuple[PlanSpec, Observations, History],
) -> None:
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    seen = by_name(obs)
    for action in d.delete:
        assert seen[action.server].members == 0
        assert seen[action.server].role == "node"
        assert not seen[action.server].terminating  # Kubernetes is deleting it already
    assert all(seen[a.server].role == "node" for a in d.drain)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_never_exceeds_max_nodes(case: tuple[PlanSpec, Observations, History]) -> None:
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    assert d.desired_nodes <= spec.node_budget
    # Terminating Pods, and the outdated ones a rolling update stops now, are on their way out.
    rolled = {a.server for a in d.roll}
    staying = [n for n in obs.nodes if not n.terminating and n.name not in rolled]
    leaving = len(obs.nodes) - len(staying)
    if d.create_nodes:
        assert len(staying) - len(d.delete) + d.create_nodes <= spec.max_nodes - spec.other_nodes
    assert d.create_nodes <= spec.scaling.max_nodes_per_step + leaving  # replacements come at once
    assert len(d.drain) <= spec.scaling.max_nodes_per_step


@settings(max_examples=300, deadline=None)
@given(cases())
def test_never_scales_in_on_stale_metrics(case: tuple[PlanSpec, Observations, History]) -> None:
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    stale = [s for s in obs.servers if s.phase == "Running" and s.metrics != "fresh"]
    if stale:
        assert d.drain == ()
    seen = by_name(obs)
    for action in d.delete:  # a zero from stale metrics is no proof of empty
        assert seen[action.server].metrics == "fresh" or seen[action.server].phase != "Running"


@settings(max_examples=300, deadline=None)
@given(cases())
def test_desired_respects_min_nodes(case: tuple[PlanSpec, Observations, History]) -> None:
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    assert d.desired_nodes >= min(spec.min_nodes, spec.node_budget)
    if spec.other_nodes == 0:
        assert d.desired_nodes >= spec.min_nodes


@settings(max_examples=300, deadline=None)
@given(cases())
def test_transfers_only_target_ready_active_hosts(
    case: tuple[PlanSpec, Observations, History],
) -> None:
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    seen = by_name(obs)
    leaving = {a.server for a in d.drain} | {a.server for a in d.delete}
    moved: Counter[str] = Counter()
    for t in d.transfers:
        target = seen[t.target]
        assert target.ready and target.alive and not target.draining
        assert target.shard is not None and t.target_uri == target.shard.uri
        assert t.target not in leaving and t.source != t.target
        assert not seen[t.source].terminating  # a stopping server moves its own members
        assert t.count > 0 and t.rate > 0
        moved[t.source] += t.count
    in_flight = Counter[str]()
    for f in obs.transfers:
        in_flight[f.source] += f.remaining
    for source, count in moved.items():
        assert count <= seen[source].members - in_flight[source]
    if spec.transfer.mode == "redirect-only":
        assert d.transfers == ()


@settings(max_examples=300, deadline=None)
@given(cases())
def test_a_rolling_update_stops_few_outdated_nodes_one_step_at_a_time(
    case: tuple[PlanSpec, Observations, History],
) -> None:
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    seen = by_name(obs)
    leaving = [n for n in obs.nodes if n.terminating and n.alive]
    assert len(d.roll) + len(leaving) <= max(spec.max_unavailable, len(leaving))
    for action in d.roll:
        node = seen[action.server]
        assert node.role == "node" and node.outdated and node.ready and node.alive
        assert not node.draining and not node.terminating
    if d.roll:
        assert not any(n.alive and not n.ready and not n.draining for n in obs.nodes)
        assert not [s for s in obs.servers if s.phase == "Running" and s.metrics != "fresh"]
        assert not {a.server for a in d.roll} & {a.server for a in d.drain}


@settings(max_examples=300, deadline=None)
@given(cases())
def test_a_node_with_members_on_their_way_in_is_never_drained_or_stopped(
    case: tuple[PlanSpec, Observations, History],
) -> None:
    """A member following a REFER to a server that drains meanwhile is turned away
    (302/503), and its source, waiting for that server's roster, REFERs it again:
    the scale-in member-loss race (tests/e2e/test_operator_scaling.py)."""
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    arriving = {f.target for f in obs.transfers if f.remaining > 0}
    assert not arriving & {a.server for a in (*d.drain, *d.roll)}


@st.composite
def settled_rollouts(draw: st.DrawFn) -> tuple[PlanSpec, Observations, History]:
    """An outdated main server beside healthy nodes, some outdated, some busy."""
    spec = draw(specs())
    capacity = spec.members_per_server
    found = [
        ServerObservation(
            name="main",
            role="main",
            ready=True,
            shard=shard("main", draw(st.integers(0, capacity)), capacity),
            outdated=True,
        )
    ]
    for i in range(draw(st.integers(0, 4))):
        members = draw(st.none() | st.integers(0, capacity))
        found.append(
            ServerObservation(
                name=f"n{i}",
                role="node",
                ready=draw(st.integers(0, 5)) > 0,
                shard=None if members is None else shard(f"n{i}", members, capacity),
                outdated=draw(st.integers(0, 5)) == 0,
                draining=draw(st.integers(0, 8)) == 0,
            )
        )
    moving = ()
    if len(found) > 1 and draw(st.integers(0, 4)) == 0:
        moving = (InFlightTransfer("main", found[1].name, 1),)
    return spec, Observations(tuple(found), moving), draw(histories())


@settings(max_examples=500, deadline=None)
@given(cases() | settled_rollouts())
def test_the_main_server_is_rolled_last_alone_once_every_node_is_updated_and_ready(
    case: tuple[PlanSpec, Observations, History],
) -> None:
    """The main server hosts every group and is the root of its tree: it is
    stopped for a rolling update only when nothing else is moving and the
    nodes can take all its members (its graceful exit then loses nobody)."""
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    assert all(a.server != "main" for a in (*d.roll, *d.drain, *d.delete))
    if d.roll_main is None:
        return
    main = obs.main
    assert main is not None and d.roll_main.server == main.name
    assert main.outdated and main.ready and main.alive
    assert not main.draining and not main.terminating
    assert spec.others_settled
    for n in obs.nodes:  # every node present runs the new template and is Ready
        assert n.alive and n.ready and not n.outdated and not n.draining and not n.terminating
    assert not [s for s in obs.servers if s.phase == "Running" and s.metrics != "fresh"]
    assert not obs.transfers
    # Alone: no other step in the same decision.
    assert not (d.roll or d.drain or d.delete or d.create_nodes or d.transfers or d.create_shards)
    room = sum(r.free for r in d.routes if r.state == "active" and r.server != main.name)
    assert room >= main.members


@settings(max_examples=300, deadline=None)
@given(settled_rollouts())
def test_the_main_server_is_rolled_once_nothing_else_moves_and_the_nodes_have_room(
    case: tuple[PlanSpec, Observations, History],
) -> None:
    """Liveness: a settled fleet with room does roll its outdated main server."""
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    main = obs.main
    assert main is not None
    quiet = spec.others_settled and not obs.transfers
    quiet = quiet and all(n.ready and not n.outdated and not n.draining for n in obs.nodes)
    quiet = quiet and not (d.roll or d.drain or d.delete or d.create_nodes or d.transfers)
    quiet = quiet and not d.create_shards
    room = sum(r.free for r in d.routes if r.state == "active" and r.server != main.name)
    assert (d.roll_main is not None) == (quiet and room >= main.members), d.reason


def assert_only_completes(d: Decision, previous: Decision) -> None:
    """``d`` repeats nothing ``previous`` did; it may only finish its work.

    Finishing means: delete the nodes ``previous`` drained once they are
    empty, move members onto the shards it created (a transfer needs the URI
    the new shard got), and, once a deletion finished a drain (freeing the
    step), drain the next node of the same scale-in.
    """
    assert d.create_nodes == 0
    assert d.create_shards == ()
    assert {a.server for a in d.delete} <= {a.server for a in previous.drain}
    if d.drain:  # only once a deletion (now or just before) finished a drain
        assert d.delete or previous.delete
        assert not {a.server for a in d.drain} & {a.server for a in previous.drain}
    sources = {a.server for a in d.drain}
    placed = {p.server for p in previous.create_shards}
    assert all(t.target in placed or t.source in sources for t in d.transfers)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_replanning_after_apply_adds_no_new_actions(
    case: tuple[PlanSpec, Observations, History],
) -> None:
    """Re-planning only completes the first plan's work; once a plan has no
    actions, planning again changes nothing."""
    spec, obs, history = case
    d1 = plan(spec, obs, history, NOW)
    obs2 = apply(obs, d1, NOW)
    d2 = plan(spec, obs2, d1.history, NOW)
    assert_only_completes(d2, d1)
    if not d2.has_actions:
        d3 = plan(spec, apply(obs2, d2, NOW), d2.history, NOW)
        assert not d3.has_actions
        assert d3.routes == d2.routes


@settings(max_examples=300, deadline=None)
@given(cases())
def test_routes_start_at_the_main_server_and_list_each_host_once(
    case: tuple[PlanSpec, Observations, History],
) -> None:
    spec, obs, history = case
    d = plan(spec, obs, history, NOW)
    seen = by_name(obs)
    names = [r.server for r in d.routes]
    assert len(names) == len(set(names))
    if d.routes:
        assert seen[names[0]].role == "main"
    states = [r.state for r in d.routes[1:]]
    assert states == sorted(states)  # active nodes first, draining ones as leaves
    for r in d.routes:
        server = seen[r.server]
        assert server.ready and server.alive and server.shard and r.uri == server.shard.uri
        assert r.free >= 0 and (r.state == "active" or r.free == 0)
