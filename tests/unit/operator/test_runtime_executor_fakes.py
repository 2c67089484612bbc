"""The executor against in-memory stand-ins for the Kubernetes API and the admin API.

These pin the restart-safety rules: a restarted operator keeps other groups'
routes on the main server, pushes nothing twice, never pushes a table without
its root, and picks node names no other conference holds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

import pytest
from admin_fakes import node_state, shard, transfer
from sipfleet.node.admin_types import (
    Access,
    NodeState,
    RouteEntry,
    Routes,
    RoutesAck,
    ShardState,
    TransferState,
)
from sipfleet.node.presentation import SenderDisplay
from sipfleet.operator import pods as podlib
from sipfleet.operator import rollout
from sipfleet.operator.executor import Executor
from sipfleet.operator.handlers.fleet import restore_main
from sipfleet.operator.kube import Kube
from sipfleet.operator.models import SipFleetSpec
from sipfleet.operator.observe import Observed
from sipfleet.operator.planner import (
    Decision,
    History,
    NodeAction,
    Observations,
    Route,
    ShardPlacement,
)
from sipfleet.operator.runtime import Runtime

A = "sip:a@example.com"
B = "sip:b@example.com"
FLEET_BODY: dict[str, Any] = {
    "apiVersion": "sipfleet.io/v1alpha1",
    "kind": "SipFleet",
    "metadata": {"name": "f", "namespace": "ns", "uid": "u"},
}
SPEC = SipFleetSpec.model_validate({"mainServer": {"domain": "example.com"}})


class FakeKube:
    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=") for part in selector.split(","))
        return [
            p
            for p in self.pods.values()
            if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        ]

    async def ensure_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name not in self.pods:
            self.pods[name] = body
            self.created.append(name)
        return self.pods[name]

    async def ensure_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Stores it; a NodePort Service gets node ports at once (as the API server does)."""
        name = body["metadata"]["name"]
        if name not in self.services:
            if body["spec"]["type"] == "NodePort":
                for i, port in enumerate(body["spec"]["ports"]):
                    port["nodePort"] = 30100 + i
            self.services[name] = body
        return self.services[name]

    async def delete_pod(self, namespace: str, name: str) -> None:
        self.pods.pop(name, None)
        self.deleted.append(name)

    async def label_pod(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        self.pods[name]["metadata"]["labels"].update(labels)


class FakeAdmin:
    """One server's admin API: its routing table, shards and calls."""

    def __init__(self, groups: dict[str, tuple[RouteEntry, ...]] | None = None) -> None:
        self.generation = 1 if groups else 0
        self.groups = groups or {}
        self.puts: list[int] = []
        self.deleted_shards: list[str] = []
        self.drained = False
        self.members = 0
        self.running: list[TransferState] = []
        self.access: Access | None = None
        self.sender_display: SenderDisplay | None = None
        self.ensured: list[tuple[str, int, SenderDisplay | None]] = []

    async def state(self) -> NodeState:
        shards = (shard(A, self.members),) if self.members else ()
        return node_state(*shards, generation=self.generation)

    async def transfers(self) -> list[TransferState]:
        return self.running

    async def routes(self) -> Routes:
        return Routes(generation=self.generation, groups=self.groups)

    async def put_routes(
        self, generation: int, groups: Mapping[str, Sequence[RouteEntry]]
    ) -> RoutesAck:
        assert generation > self.generation, "generations must grow"
        self.generation, self.groups = generation, {g: tuple(es) for g, es in groups.items()}
        self.puts.append(generation)
        return RoutesAck(generation=generation)

    async def ensure_shard(
        self,
        group: str,
        capacity: int,
        access: Access | None = None,
        sender_display: SenderDisplay | None = None,
    ) -> ShardState:
        self.access, self.sender_display = access, sender_display
        self.ensured.append((group, capacity, sender_display))
        return shard(group, uri=f"sip:new@{group}", capacity=capacity)

    async def delete_shard(self, group: str) -> ShardState:
        self.deleted_shards.append(group)
        return shard(group)

    async def drain(self) -> NodeState:
        self.drained = True
        return node_state(generation=self.generation, draining=True)


class FakeRuntime(Runtime):
    def __init__(self, kube: FakeKube, admins: dict[str, FakeAdmin]) -> None:
        super().__init__(kube=cast(Kube, kube), session=cast(Any, None), interval=2)
        self.admins = admins

    def admin(self, base_url: str, token: str) -> Any:
        return self.admins[base_url]


def observed(admins: dict[str, FakeAdmin], node_pods: tuple[dict[str, Any], ...] = ()) -> Observed:
    return Observed(
        observations=Observations(()),
        node_pods=node_pods,
        other_nodes=0,
        urls={name: name for name in admins},
        states={
            name: node_state(*(shard(g) for g in a.groups), generation=a.generation)
            for name, a in admins.items()
        },
        taken=time.monotonic(),
    )


def executor(rt: FakeRuntime, conference: str, obs: Observed) -> Executor:
    return Executor(rt, "ns", FLEET_BODY, SPEC, conference, "tok", obs)


def decision(group: str, *servers: str, **kw: Any) -> Decision:
    routes = tuple(Route(s, f"sip:{group[4]}@{s}", "active", 5) for s in servers)
    return Decision(group, 0, History(), routes=routes, **kw)


async def test_restarted_operator_keeps_other_groups_on_the_main_server() -> None:
    b_entry = (RouteEntry("f-main", "sip:b@f-main", "active", 3),)
    admins = {"f-main": FakeAdmin({B: b_entry}), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(FakeKube(), admins)
    await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-main", "f-node-1"))
    assert set(admins["f-main"].groups) == {A, B}
    assert admins["f-main"].groups[B] == b_entry
    assert set(admins["f-node-1"].groups) == {A}


async def test_same_routes_are_not_pushed_twice() -> None:
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(FakeKube(), admins)
    for _ in range(2):
        await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-main", "f-node-1"))
    assert len(admins["f-main"].puts) == 1 and len(admins["f-node-1"].puts) == 1


async def test_a_server_that_lost_its_table_gets_it_again() -> None:
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(FakeKube(), admins)
    await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-main", "f-node-1"))
    admins["f-node-1"] = FakeAdmin()  # restarted: generation 0, empty table
    await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-main", "f-node-1"))
    assert set(admins["f-node-1"].groups) == {A}
    assert len(admins["f-main"].puts) == 1


async def test_a_new_shard_is_routed_in_the_pass_that_creates_it() -> None:
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(FakeKube(), admins)
    place = ShardPlacement("f-node-1", A, 10, "node ready")
    await executor(rt, "conf-a", observed(admins)).apply(
        decision(A, "f-main", create_shards=(place,))
    )
    entries = admins["f-main"].groups[A]
    assert [e.server for e in entries] == ["f-main", "f-node-1"]
    assert entries[1] == RouteEntry("f-node-1", f"sip:new@{A}", "active", 10)


async def test_a_restarted_main_server_is_routed_at_the_root_in_the_same_pass() -> None:
    """Crash recovery: a main server back from a restart has no shard; the pass that
    recreates it pushes the table with it at the root at once."""
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(FakeKube(), admins)
    place = ShardPlacement("f-main", A, 10, "main ready")
    await executor(rt, "conf-a", observed(admins)).apply(
        decision(A, "f-node-1", create_shards=(place,))
    )
    assert [e.server for e in admins["f-main"].groups[A]] == ["f-main", "f-node-1"]
    assert [e.server for e in admins["f-node-1"].groups[A]] == ["f-main", "f-node-1"]


async def test_a_server_restarting_while_observed_gets_its_table_with_its_new_shard() -> None:
    """The main server did not answer the observation (it was restarting) and had its
    table pushed before; the pass that recreates its shard pushes its table again."""
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(FakeKube(), admins)
    await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-main", "f-node-1"))
    admins["f-main"] = FakeAdmin()  # restarted: no shard, no table
    seen = observed(admins)
    seen = replace(seen, states={n: st for n, st in seen.states.items() if n != "f-main"})
    place = ShardPlacement("f-main", A, 10, "main ready")
    # The planner routes nothing while the main server has no shard: the table is
    # the last one, headed by the main server's new shard.
    await executor(rt, "conf-a", seen).apply(decision(A, create_shards=(place,)))
    for server in ("f-main", "f-node-1"):
        assert [e.server for e in admins[server].groups[A]] == ["f-main", "f-node-1"]
    assert admins["f-main"].groups[A][0].uri == f"sip:new@{A}"


async def test_a_new_shard_gets_the_conference_access_policy_and_sender_display() -> None:
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(FakeKube(), admins)
    access = Access(policy="allowlist", allow=("sip:a@example.com",))
    run = Executor(
        rt, "ns", FLEET_BODY, SPEC, "conf-a", "tok", observed(admins), access, SenderDisplay.CPIM
    )
    place = ShardPlacement("f-node-1", A, 10, "node ready")
    await run.apply(decision(A, "f-main", create_shards=(place,)))
    assert admins["f-node-1"].access == access
    assert admins["f-node-1"].sender_display is SenderDisplay.CPIM


async def test_a_changed_sender_display_reaches_the_existing_shards_once() -> None:
    admins = {"f-main": FakeAdmin({A: (RouteEntry("f-main", "sip:a@f-main"),)})}
    rt = FakeRuntime(FakeKube(), admins)
    auto = node_state(shard(A, sender_display=SenderDisplay.AUTO))  # the server's way
    before = replace(observed(admins), states={"f-main": auto})
    prefix = SenderDisplay.PREFIX
    run = Executor(rt, "ns", FLEET_BODY, SPEC, "conf-a", "tok", before, None, prefix)
    await run.apply(decision(A, "f-main"))
    assert admins["f-main"].ensured == [(A, 20, prefix)]  # its capacity kept
    assert admins["f-main"].access is None  # the policy is left as it is
    assert ("Normal", "SenderDisplay") in [(e.type, e.reason) for e in run.outcome.events]
    after = replace(before, states={"f-main": node_state(shard(A, sender_display=prefix))})
    await Executor(rt, "ns", FLEET_BODY, SPEC, "conf-a", "tok", after, None, prefix).apply(
        decision(A, "f-main")
    )
    assert len(admins["f-main"].ensured) == 1  # already so: nothing sent
    await executor(rt, "conf-a", before).apply(decision(A, "f-main"))  # unset: left alone
    assert len(admins["f-main"].ensured) == 1
    old = replace(before, states={"f-main": node_state(shard(A))})  # reports no mode
    await Executor(rt, "ns", FLEET_BODY, SPEC, "conf-a", "tok", old, None, prefix).apply(
        decision(A, "f-main")
    )
    assert len(admins["f-main"].ensured) == 1  # a server that predates the mode: left alone


async def test_no_push_without_the_main_server_at_the_root() -> None:
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(FakeKube(), admins)
    await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-node-1"))
    assert admins["f-node-1"].puts == [] and admins["f-main"].puts == []


async def test_new_nodes_take_free_names_and_never_another_conferences_pod() -> None:
    kube = FakeKube()
    other = podlib.server_pod(
        FLEET_BODY, "f-node-1", "node", podlib.server_pod_spec("f", SPEC, "node", "conf-b"), 1
    )
    kube.pods["f-node-1"] = other
    rt = FakeRuntime(kube, {"f-main": FakeAdmin()})
    out = await executor(rt, "conf-a", observed(rt.admins)).apply(
        decision(A, "f-main", create_nodes=2, create_reason="scale out")
    )
    assert kube.created == ["f-node-2", "f-node-3"]
    assert {podlib.conference_of(kube.pods[n]) for n in kube.created} == {"conf-a"}
    assert [e.reason for e in out.events] == ["ScaleOut"]


@pytest.mark.parametrize("mode", ["NodePort", "LoadBalancer"])
async def test_a_server_with_its_own_service_is_created_once_that_has_an_address(
    mode: str,
) -> None:
    """NodePort: node ports come with the Service, so the Pod follows in the same
    pass, advertising them. LoadBalancer with no IP yet: no Pod, so nothing can
    route a join or transfer to it; the Service's IP lets the next pass create it."""
    spec = SipFleetSpec.model_validate(
        {"mainServer": {"domain": "example.com"}, "exposure": {"mode": mode}}
    )
    kube = FakeKube()
    rt = FakeRuntime(kube, {"f-main": FakeAdmin()})

    async def scale_out() -> list[str]:
        ex = Executor(rt, "ns", FLEET_BODY, spec, "conf-a", "tok", observed(rt.admins))
        out = await ex.apply(decision(A, "f-main", create_nodes=1, create_reason="scale out"))
        return [e.reason for e in out.events]

    reasons = await scale_out()
    assert list(kube.services) == ["f-node-1-sip"]
    if mode == "LoadBalancer":
        assert kube.created == [] and reasons == ["AddressPending"]
        kube.services["f-node-1-sip"]["status"] = {
            "loadBalancer": {"ingress": [{"ip": "203.0.113.4"}]}
        }
        reasons = await scale_out()
    assert kube.created == ["f-node-1"] and reasons == ["ScaleOut"]
    env = {e["name"]: e for e in kube.pods["f-node-1"]["spec"]["containers"][0]["env"]}
    if mode == "NodePort":
        assert env["SIPFLEET_ADVERTISE_UDP_PORT"]["value"] == "30100"
        assert env["SIPFLEET_ADVERTISE_TCP_PORT"]["value"] == "30101"
    else:
        assert env["SIPFLEET_ADVERTISE_HOST"]["value"] == "203.0.113.4"


async def test_drain_labels_the_pod_and_tells_the_server() -> None:
    kube = FakeKube()
    spec = podlib.server_pod_spec("f", SPEC, "node", "conf-a")
    kube.pods["f-node-1"] = podlib.server_pod(FLEET_BODY, "f-node-1", "node", spec, 1)
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(kube, admins)
    await executor(rt, "conf-a", observed(admins)).apply(
        decision(A, "f-main", "f-node-1", drain=(NodeAction("f-node-1", "drain f-node-1"),))
    )
    assert kube.pods["f-node-1"]["metadata"]["labels"][podlib.LABEL_DRAINING] == "true"
    assert admins["f-node-1"].drained


async def test_deleted_node_leaves_the_routes_and_its_pod_goes() -> None:
    kube = FakeKube()
    spec = podlib.server_pod_spec("f", SPEC, "node", "conf-a")
    kube.pods["f-node-1"] = podlib.server_pod(FLEET_BODY, "f-node-1", "node", spec, 1)
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(kube, admins)
    await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-main", "f-node-1"))
    await executor(rt, "conf-a", observed(admins)).apply(
        decision(A, "f-main", "f-node-1", delete=(NodeAction("f-node-1", "empty"),))
    )
    assert [e.server for e in admins["f-main"].groups[A]] == ["f-main"]
    assert kube.deleted == ["f-node-1"]


@pytest.mark.parametrize("busy", ["members", "transfer"])
async def test_a_node_found_busy_at_the_last_moment_is_not_deleted(busy: str) -> None:
    """The plan may rest on a snapshot from before a member arrived."""
    kube = FakeKube()
    spec = podlib.server_pod_spec("f", SPEC, "node", "conf-a")
    kube.pods["f-node-1"] = podlib.server_pod(FLEET_BODY, "f-node-1", "node", spec, 1)
    admins = {"f-main": FakeAdmin(), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(kube, admins)
    await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-main", "f-node-1"))
    if busy == "members":
        admins["f-node-1"].members = 1
    else:
        admins["f-node-1"].running = [transfer(A, "sip:a-2@h", 1)]
    await executor(rt, "conf-a", observed(admins)).apply(
        decision(A, "f-main", "f-node-1", delete=(NodeAction("f-node-1", "empty"),))
    )
    assert kube.deleted == []


async def test_withdraw_removes_routes_shards_and_nodes() -> None:
    kube = FakeKube()
    spec = podlib.server_pod_spec("f", SPEC, "node", "conf-a")
    node = podlib.server_pod(FLEET_BODY, "f-node-1", "node", spec, 1)
    kube.pods["f-node-1"] = node
    b_entry = (RouteEntry("f-main", "sip:b@f-main", "active", 3),)
    admins = {"f-main": FakeAdmin({B: b_entry}), "f-node-1": FakeAdmin()}
    rt = FakeRuntime(kube, admins)
    await executor(rt, "conf-a", observed(admins)).apply(decision(A, "f-main", "f-node-1"))
    ex = executor(rt, "conf-a", observed(admins, (node,)))
    await ex.withdraw(A)
    assert ex.outcome.failures == []
    assert set(admins["f-main"].groups) == {B}
    assert admins["f-main"].deleted_shards == [A]
    assert admins["f-node-1"].deleted_shards == [A]
    assert kube.deleted == ["f-node-1"]


@pytest.mark.parametrize("count", [1, 3])
async def test_node_names_fill_gaps(count: int) -> None:
    kube = FakeKube()
    spec = podlib.server_pod_spec("f", SPEC, "node", "conf-a")
    kube.pods["f-node-2"] = podlib.server_pod(FLEET_BODY, "f-node-2", "node", spec, 2)
    rt = FakeRuntime(kube, {"f-main": FakeAdmin()})
    await executor(rt, "conf-a", observed(rt.admins)).apply(
        decision(A, "f-main", create_nodes=count, create_reason="scale out")
    )
    assert kube.created == ["f-node-1", "f-node-3", "f-node-4"][:count]


async def test_a_changed_access_policy_reaches_running_shards_once() -> None:
    entries = (RouteEntry("f-main", "sip:a@f-main", "active", 5),)
    admins = {"f-main": FakeAdmin({A: entries}), "f-node-1": FakeAdmin({A: entries})}
    rt = FakeRuntime(FakeKube(), admins)
    obs = observed(admins)
    reported = {
        "f-main": Access(policy="open"),  # stale: the conference said open before
        "f-node-1": Access(policy="authenticated", allow=()),  # already as wanted
    }
    obs = replace(
        obs,
        states={
            name: state.model_copy(
                update={
                    "shards": tuple(
                        s.model_copy(update={"access": reported[name]}) for s in state.shards
                    )
                }
            )
            for name, state in obs.states.items()
        },
    )
    wanted = Access(policy="authenticated")
    run = Executor(rt, "ns", FLEET_BODY, SPEC, "conf-a", "tok", obs, wanted)
    outcome = await run.apply(decision(A, "f-main", "f-node-1"))
    assert admins["f-main"].access == wanted  # re-sent to the stale server only
    assert admins["f-node-1"].access is None
    assert [e.reason for e in outcome.events] == ["AccessUpdated"]


async def test_a_rolled_main_server_is_deleted_and_created_again_from_the_new_template() -> None:
    """The executor stops the main server Pod (graceful exit); once the Pod is
    gone, restore_main (the Pod watch's "gone") creates it again under its name
    with the fleet's current main template digest."""
    admins = {"f-main": FakeAdmin({A: (RouteEntry("f-main", "sip:a@f-main", "active", 3),)})}
    kube = FakeKube()
    kube.pods["f-main"] = podlib.server_pod(
        FLEET_BODY, "f-main", "main", podlib.server_pod_spec("f", SPEC, "main")
    )
    rt = FakeRuntime(kube, admins)
    action = NodeAction("f-main", "roll main server f-main (0 members) to the new template")
    out = await executor(rt, "conf", observed(admins)).apply(
        decision(A, "f-main", roll_main=action)
    )
    assert kube.deleted == ["f-main"] and "f-main" not in kube.pods
    assert [e.reason for e in out.events] == ["RollingUpdate"]

    async def read_custom(*_: Any) -> dict[str, Any]:
        return {**FLEET_BODY, "spec": {"mainServer": {"domain": "example.com"}}}

    kube.read_custom = read_custom  # type: ignore[attr-defined]
    seen = rt.memory("uid-conf")  # a conference on this fleet, as its last pass saw it
    seen.ref, seen.fleet, seen.spec = {"metadata": {"name": "conf"}}, ("ns", "f"), {"uri": A}
    await restore_main(rt, "ns", "f")
    assert kube.created == ["f-main"]
    recorded = rollout.template_of(kube.pods["f-main"])
    assert recorded == rollout.main_template_hash(FLEET_BODY, SPEC)
    # The new Pod is told the group it will host (503, not 404, until it is back).
    annotations = kube.pods["f-main"]["metadata"]["annotations"]
    assert (
        annotations[podlib.EXPECTED_GROUPS] == podlib.expected_groups([A])[podlib.EXPECTED_GROUPS]
    )
