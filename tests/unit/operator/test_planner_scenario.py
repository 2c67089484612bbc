"""The planner in a closed loop with a toy world: members join and leave,
Pods take a few seconds to start, transfers finish within a tick.

The world routes a join the way the main server does: to the first route
with free room (else to the main server), so the planner's routes are what
spreads the group.
"""

from __future__ import annotations

from dataclasses import replace

from planner_sim import apply, main, make_spec, node
from sipfleet.operator.planner import Decision, History, Observations, PlanSpec, plan

START_DELAY = 4.0
TICK = 2.0


class World:
    def __init__(self, spec: PlanSpec) -> None:
        self.spec = spec
        self.obs = Observations((main(None),))
        self.history = History()
        self.now = 0.0
        self.peak_pods = 0
        self.deleted_with_members: list[str] = []

    def members(self) -> dict[str, int]:
        return {s.name: s.members for s in self.obs.servers}

    def step(self, joins: int = 0, leaves: int = 0) -> Decision:
        d = plan(self.spec, self.obs, self.history, self.now)
        before = self.members()
        self.deleted_with_members += [a.server for a in d.delete if before[a.server]]
        self.obs = apply(self.obs, d, self.now)
        self.history = d.history
        self.peak_pods = max(self.peak_pods, len(self.obs.nodes))
        self.now += TICK
        self._finish_transfers()
        self._start_pods()
        self._join(d, joins)
        self._leave(leaves)
        return d

    def _set_members(self, name: str, delta: int) -> None:
        servers = []
        for s in self.obs.servers:
            if s.name == name and s.shard:
                s = replace(s, shard=replace(s.shard, members=s.shard.members + delta))
            servers.append(s)
        self.obs = replace(self.obs, servers=tuple(servers))

    def _finish_transfers(self) -> None:
        for t in self.obs.transfers:
            self._set_members(t.source, -t.remaining)
            self._set_members(t.target, t.remaining)
        self.obs = replace(self.obs, transfers=())

    def _start_pods(self) -> None:
        self.obs = replace(
            self.obs,
            servers=tuple(
                replace(s, phase="Running", ready=True, metrics="fresh")
                if s.phase == "Pending" and self.now - s.created_at >= START_DELAY
                else s
                for s in self.obs.servers
            ),
        )

    def _join(self, d: Decision, joins: int) -> None:
        free = {r.server: r.free for r in d.routes if r.state == "active"}
        for _ in range(joins):
            target = next((name for name, room in free.items() if room > 0), "main")
            free[target] = free.get(target, 0) - 1
            self._set_members(target, 1)

    def _leave(self, leaves: int) -> None:
        for _ in range(leaves):
            fullest = max(self.obs.servers, key=lambda s: (s.members, s.role == "node"))
            if fullest.members:
                self._set_members(fullest.name, -1)

    def total(self) -> int:
        return sum(self.members().values())

    def active_nodes(self) -> int:
        return sum(1 for s in self.obs.nodes if not s.draining)


def test_grows_spreads_and_shrinks_back_to_the_main_server() -> None:
    spec = make_spec(20, max_nodes=8, scale_down_stabilization_seconds=20, cooldown_seconds=4)
    world = World(spec)
    for _ in range(25):  # 5 joins per tick up to 100 members
        world.step(joins=5 if world.total() < 100 else 0)
    for _ in range(15):
        d = world.step()
    assert world.total() == 100
    assert world.active_nodes() == 6  # 100 members at 16 per server: 7 servers
    assert all(s.members <= 20 for s in world.obs.servers)
    assert len(d.routes) == 7 and d.phase == "Running"
    assert world.peak_pods <= 8

    for _ in range(30):  # everybody but 10 leaves
        world.step(leaves=5 if world.total() > 10 else 0)
    for _ in range(40):
        d = world.step()
    assert world.total() == 10
    assert world.obs.nodes == ()
    assert d.routes[0].server == "main" and len(d.routes) == 1
    assert world.deleted_with_members == []


def test_max_nodes_caps_growth_and_says_so() -> None:
    world = World(make_spec(20, max_nodes=2, cooldown_seconds=0))
    for _ in range(20):
        d = world.step(joins=10)
    assert len(world.obs.nodes) == 2
    assert "max-nodes" in {limit.value for limit in d.limited}


def _finish_stops(obs: Observations) -> Observations:
    """Kubernetes and the servers catch up: new nodes run the new template,
    Ready (their shard is placed by the next plan); stopping servers move their
    members to the active nodes that host the group (as the graceful exit
    does; not before there is one) and go; a stopped main server is back under
    its name from the new template, empty."""
    kept = [
        replace(s, ready=True, phase="Running", metrics="fresh") if s.phase == "Pending" else s
        for s in obs.servers
    ]
    receivers = [
        s.name for s in kept if s.role == "node" and s.shard and s.ready and not s.draining
    ]
    if not receivers:
        return Observations(tuple(kept))
    moving = sum(s.members for s in kept if s.terminating)
    out = []
    for s in kept:
        if s.terminating and s.role == "node":
            continue
        if s.terminating:  # the main server: recreated, empty, new template
            s = replace(s, draining=False, terminating=False, outdated=False, shard=None)
        if s.name in receivers:
            i = receivers.index(s.name)
            share = moving // len(receivers) + (1 if i < moving % len(receivers) else 0)
            assert s.shard is not None
            s = replace(s, shard=replace(s.shard, members=s.members + share))
        out.append(s)
    return Observations(tuple(out))


def test_a_rollout_rolls_every_node_then_the_main_server_alone() -> None:
    """Three outdated nodes and an outdated main server (the e2e fleet's shape):
    nodes go one at a time, then a node more starts for the main server's
    members, then the main server goes alone; no member is lost on the way."""
    spec = make_spec(40, target_load=0.4, high_watermark=0.75, min_nodes=3, max_nodes=5)
    obs = Observations(
        (
            main(16, capacity=40, outdated=True),
            *(node(f"n{i}", 15, capacity=40, outdated=True) for i in range(3)),
        )
    )
    history = History(started=0.0)
    order: list[str] = []
    for step in range(30):
        now = 1000.0 + step
        d = plan(spec, obs, history, now)
        history = d.history
        if d.roll_main:  # alone: nothing else stopping, every node updated and Ready
            assert not d.roll and not any(s.outdated for s in obs.nodes)
            assert all(s.ready and not s.terminating and s.shard for s in obs.nodes)
        order += [a.server for a in d.roll] + ([d.roll_main.server] if d.roll_main else [])
        obs = _finish_stops(apply(obs, d, now))
        assert sum(s.members for s in obs.servers) == 16 + 45  # nobody lost
        if not any(s.outdated for s in obs.servers):
            break
    assert order == ["n0", "n2", "n1", "main"], order  # emptiest node first, main last
