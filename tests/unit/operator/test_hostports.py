"""HostPort placement (hostports.py): which node and host port a server gets,
as tables. Whether the portmap DNAT then carries SIP is the e2e's job
(tests/e2e/test_operator_exposure.py)."""

from __future__ import annotations

from typing import Any

import pytest
from sipfleet.operator import hostports

pytestmark = pytest.mark.unit

PORTS = range(5060, 5063)


def node(name: str, *, ready: bool = True, cordoned: bool = False, **extra: Any) -> dict[str, Any]:
    addresses = extra.pop("addresses", {"InternalIP": f"10.0.0.{name[-1]}"})
    return {
        "metadata": {"name": name},
        "spec": {"unschedulable": cordoned, "taints": extra.pop("taints", [])},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "addresses": [{"type": t, "address": a} for t, a in addresses.items()],
        },
    }


def pod(on: str | None, *ports: int, fleet: str = "f", pinned: bool = False, **st: str) -> Any:
    spec: dict[str, Any] = {"containers": [{"ports": [{"hostPort": p} for p in ports]}]}
    if pinned and on:
        hostports.pin({"spec": spec}, on)
    elif on:
        spec["nodeName"] = on
    meta = {"namespace": "ns", "labels": {"sipfleet.io/fleet": fleet}}
    return {"metadata": meta, "spec": spec, "status": st}


def choose(nodes: list[Any], pods: list[Any], kind: str = "InternalIP", **kw: Any) -> Any:
    return hostports.choose(
        nodes,
        pods,
        address_type=kind,
        ports=PORTS,
        is_ours=("ns", {"sipfleet.io/fleet": "f"}),
        **kw,
    )


def test_first_server_gets_the_first_port_of_the_first_node() -> None:
    slot = choose([node("n2"), node("n1")], [])
    assert slot == hostports.HostSlot("n1", "10.0.0.1", "10.0.0.1", 5060)


def test_servers_spread_over_nodes_then_take_the_next_free_port() -> None:
    nodes = [node("n1"), node("n2")]
    assert choose(nodes, [pod("n1", 5060)]).node == "n2"
    # The same fleet name in another namespace is not ours.
    theirs = pod("n1", 5060)
    theirs["metadata"]["namespace"] = "other"
    assert choose(nodes, [theirs, pod("n2", 5060)]).node == "n1"
    # Both nodes hold one of ours: n1 again, at the port nobody there holds.
    slot = choose(nodes, [pod("n1", 5060), pod("n2", 5060), pod("n1", 5061, fleet="other")])
    assert (slot.node, slot.port) == ("n1", 5062)
    # A Pod pinned but not yet bound counts where it is pinned; a finished one not at all.
    slot = choose([node("n1")], [pod("n1", 5060, pinned=True), pod("n1", 5061, phase="Failed")])
    assert (slot.node, slot.port) == ("n1", 5061)


def test_full_nodes_are_skipped_and_all_full_is_said() -> None:
    full = [pod("n1", *PORTS, fleet="other")]
    assert choose([node("n1"), node("n2")], [*full, pod("n2", 5060)]).node == "n2"
    with pytest.raises(hostports.NoHostSlot, match="5060-5062 is taken") as err:
        choose([node("n1")], full)
    assert err.value.reason == "HostPortsExhausted"


def test_the_chosen_address_type_is_advertised_or_its_absence_reported() -> None:
    both = node("n1", addresses={"InternalIP": "10.0.0.1", "ExternalIP": "198.51.100.1"})
    slot = choose([node("n2"), both], [], "ExternalIP")
    assert slot == hostports.HostSlot("n1", "198.51.100.1", "10.0.0.1", 5060)
    external_only = node("n3", addresses={"ExternalIP": "198.51.100.3"})
    assert choose([external_only], [], "ExternalIP").host_ip is None
    with pytest.raises(hostports.NoHostSlot, match=r"has an ExternalIP \(n2\)") as err:
        choose([node("n2")], [], "ExternalIP")
    assert err.value.reason == "NodeAddressMissing"


def test_unready_cordoned_and_tainted_nodes_are_not_candidates() -> None:
    taint = {"key": "dedicated", "value": "sip", "effect": "NoSchedule"}
    nodes = [node("n1", ready=False), node("n2", cordoned=True), node("n3", taints=[taint])]
    with pytest.raises(hostports.NoHostSlot) as err:
        choose(nodes, [])
    assert err.value.reason == "NoSchedulableNode"
    soft = {"key": "x", "effect": "PreferNoSchedule"}
    assert choose([*nodes, node("n4", taints=[soft])], []).node == "n4"
    for toleration in (
        {"key": "dedicated", "value": "sip", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists"},
        {"operator": "Exists"},
    ):
        assert choose(nodes, [], tolerations=[toleration]).node == "n3"
    wrong = {"key": "dedicated", "value": "web", "effect": "NoSchedule"}
    with pytest.raises(hostports.NoHostSlot):
        choose(nodes, [], tolerations=[wrong])


def test_pin_adds_the_node_to_every_required_term() -> None:
    body: dict[str, Any] = {"spec": {}}
    hostports.pin(body, "n1")
    assert hostports.pinned_node(body) == "n1"
    terms = body["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    ]
