"""Exposure modes: the Services and Pod settings the operator writes per mode, and
what the status shows (docs/install.md, "Reaching the fleet"). The manifests are
checked here; that kube-proxy carries SIP through them is the e2e's job."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from sipfleet.operator import exposure, hostports, pods
from sipfleet.operator.kube import Obj
from sipfleet.operator.models import SipFleetSpec
from sipfleet.operator.status import fleet_status

FLEET: dict[str, Any] = {
    "apiVersion": "sipfleet.io/v1alpha1",
    "kind": "SipFleet",
    "metadata": {"name": "f", "namespace": "ns", "uid": "u-1"},
}

pytestmark = pytest.mark.unit


def spec(mode: str = "PodIP", entry: str = "ClusterIP") -> SipFleetSpec:
    return SipFleetSpec.model_validate(
        {
            "mainServer": {"domain": "example.com", "sipPort": 5070},
            "exposure": {"mode": mode, "entryServiceType": entry},
        }
    )


def node_pod(s: SipFleetSpec) -> Obj:
    return pods.server_pod(FLEET, "f-node-1", "node", pods.server_pod_spec("f", s, "node"), 1)


def env(pod: Obj) -> dict[str, Any]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_default_is_pod_ip_and_advertises_nothing() -> None:
    s = SipFleetSpec.model_validate({"mainServer": {"domain": "example.com"}})
    assert (s.exposure.mode, s.exposure.entry_service_type) == ("PodIP", "ClusterIP")
    pod = exposure.expose_pod(node_pod(s), "PodIP")
    assert not any(k.startswith("SIPFLEET_ADVERTISE") for k in env(pod))
    assert all("hostPort" not in p for p in pod["spec"]["containers"][0]["ports"])
    assert pod["metadata"]["labels"][exposure.LABEL_SERVER] == "f-node-1"
    pod["status"] = {"podIP": "10.1.0.7", "hostIP": "192.168.1.4"}
    assert exposure.advertised(pod) == "10.1.0.7:5060"


@pytest.mark.parametrize("entry", ["ClusterIP", "NodePort", "LoadBalancer"])
def test_entry_service_selects_the_main_server_on_udp_and_tcp(entry: str) -> None:
    svc = exposure.entry_service(FLEET, spec(entry=entry))
    assert svc["metadata"]["name"] == "f-sip"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert svc["spec"]["type"] == entry
    assert svc["spec"]["selector"] == {pods.LABEL_FLEET: "f", pods.LABEL_ROLE: "main"}
    ports = {(p["protocol"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {("UDP", 5070, 5070), ("TCP", 5070, 5070)}
    # Outside traffic keeps its source address (kubernetes #18933): Local policy.
    assert svc["spec"].get("externalTrafficPolicy") == (None if entry == "ClusterIP" else "Local")


SLOT = hostports.HostSlot("n1", "203.0.113.4", "192.168.1.4", 5061)


def test_host_port_mode_pins_the_node_and_advertises_its_address_and_host_port() -> None:
    with pytest.raises(ValueError, match="needs a node and host port"):
        exposure.expose_pod(node_pod(spec("HostPort")), "HostPort")
    pod = exposure.expose_pod(node_pod(spec("HostPort")), "HostPort", slot=SLOT)
    ports = {p["name"]: p for p in pod["spec"]["containers"][0]["ports"]}
    assert (ports["sip-udp"]["hostPort"], ports["sip-udp"]["containerPort"]) == (5061, 5060)
    assert ports["sip-tcp"]["hostPort"] == 5061 and "hostPort" not in ports["admin"]
    # Only packets to the node's InternalIP are translated, never 127.0.0.1.
    assert ports["sip-udp"]["hostIP"] == ports["sip-tcp"]["hostIP"] == "192.168.1.4"
    assert hostports.pinned_node(pod) == "n1"
    e = env(pod)
    assert e["SIPFLEET_ADVERTISE_HOST"] == {
        "name": "SIPFLEET_ADVERTISE_HOST",
        "value": "203.0.113.4",
    }
    assert e["SIPFLEET_ADVERTISE_UDP_PORT"]["value"] == e["SIPFLEET_ADVERTISE_TCP_PORT"]["value"]
    assert e["SIPFLEET_ADVERTISE_UDP_PORT"]["value"] == "5061"
    assert exposure.advertised(pod) == "203.0.113.4:5061"  # known before scheduling


def node_port_service(udp: int | None, tcp: int | None) -> Obj:
    svc = exposure.server_service(FLEET, "f-node-1", 5060, "NodePort")
    for port, node_port in zip(svc["spec"]["ports"], (udp, tcp), strict=True):
        if node_port:
            port["nodePort"] = node_port
    return svc


def test_node_port_mode_advertises_the_node_and_its_node_ports() -> None:
    svc = exposure.server_service(FLEET, "f-node-1", 5060, "NodePort")
    assert svc["metadata"]["name"] == "f-node-1-sip"
    assert svc["spec"]["selector"] == {exposure.LABEL_SERVER: "f-node-1"}
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert exposure.service_address(svc) is None  # no node ports allocated yet
    address = exposure.service_address(node_port_service(31000, 31001))
    assert address == exposure.Address(None, 31000, 31001)
    pod = exposure.expose_pod(node_pod(spec("NodePort")), "NodePort", address)
    e = env(pod)
    assert e["SIPFLEET_ADVERTISE_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert (
        e["SIPFLEET_ADVERTISE_UDP_PORT"]["value"],
        e["SIPFLEET_ADVERTISE_TCP_PORT"]["value"],
    ) == (
        "31000",
        "31001",
    )
    pod["status"] = {"hostIP": "192.168.1.4", "podIP": "10.1.0.7"}
    assert exposure.advertised(pod) == "192.168.1.4:31000/udp,31001/tcp"
    with pytest.raises(ValueError, match="needs its Service's address"):
        exposure.expose_pod(node_pod(spec("NodePort")), "NodePort")


def test_load_balancer_mode_waits_for_an_ip_and_advertises_it() -> None:
    svc = exposure.server_service(FLEET, "f-node-1", 5060, "LoadBalancer")
    assert exposure.service_address(svc) is None
    svc["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.example.net"}]}}
    assert exposure.service_address(svc) is None  # servers advertise IP addresses only
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}
    address = exposure.service_address(svc)
    assert address == exposure.Address("203.0.113.9", 5060, 5060)
    pod = exposure.expose_pod(node_pod(spec("LoadBalancer")), "LoadBalancer", address)
    assert env(pod)["SIPFLEET_ADVERTISE_HOST"]["value"] == "203.0.113.9"
    assert exposure.advertised(pod) == "203.0.113.9:5060"
    with pytest.raises(ValueError):
        exposure.server_service(FLEET, "f-node-1", 5060, "HostPort")


def ready_node(name: str, **addresses: str) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": t, "address": a} for t, a in addresses.items()],
        },
    }


class FakeKube:
    """Stores Services by name and hands them back as a stored copy; lists the
    given Nodes and Pods."""

    def __init__(self, allocate: dict[str, Any] | None = None) -> None:
        self.services: dict[str, Obj] = {}
        self.allocate = allocate or {}
        self.nodes: list[Obj] = [ready_node("n1", InternalIP="192.168.1.4")]
        self.pods: list[Obj] = []

    async def list_all_pods(self) -> list[Obj]:
        listed = list(self.pods)
        await asyncio.sleep(0)  # the answer is on its way: another placement may run
        return listed

    async def list_nodes(self) -> list[Obj]:
        return self.nodes

    async def ensure_pod(self, namespace: str, body: Obj) -> Obj:
        self.pods.append({**copy.deepcopy(body), "status": {"phase": "Pending"}})
        return body

    async def ensure_service(self, namespace: str, body: Obj) -> Obj:
        name = body["metadata"]["name"]
        if name not in self.services:
            stored = copy.deepcopy(body)
            for port in stored["spec"]["ports"]:
                if port["protocol"] in self.allocate:
                    port["nodePort"] = self.allocate[port["protocol"]]
            self.services[name] = stored
        return self.services[name]


async def test_prepare_pod_waits_for_the_service_address() -> None:
    s = spec("LoadBalancer")
    kube = FakeKube()
    assert await exposure.prepare_pod(kube, FLEET, node_pod(s), s) is None
    assert set(kube.services) == {"f-node-1-sip"}  # the Service comes first
    kube.services["f-node-1-sip"]["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}
    pod = await exposure.prepare_pod(kube, FLEET, node_pod(s), s)
    assert pod is not None and env(pod)["SIPFLEET_ADVERTISE_HOST"]["value"] == "203.0.113.9"
    s = spec("NodePort")
    kube = FakeKube({"UDP": 30500, "TCP": 30501})
    pod = await exposure.prepare_pod(kube, FLEET, node_pod(s), s)
    assert pod is not None and env(pod)["SIPFLEET_ADVERTISE_TCP_PORT"]["value"] == "30501"
    kube = FakeKube()
    s = spec("HostPort")
    pod = await exposure.prepare_pod(kube, FLEET, node_pod(s), s)
    assert pod is not None and not kube.services
    assert env(pod)["SIPFLEET_ADVERTISE_HOST"]["value"] == "192.168.1.4"
    assert env(pod)["SIPFLEET_ADVERTISE_UDP_PORT"]["value"] == "5060"  # hostPorts.first
    assert [p["metadata"]["name"] for p in kube.pods] == ["f-node-1"]  # created at once
    # A Pod that exists already keeps its place (without what the API server set).
    meta = {**pod["metadata"], "uid": "u-9", "resourceVersion": "7"}
    kube.pods = [{**pod, "metadata": meta, "status": {"phase": "Running"}}]
    assert await exposure.prepare_pod(kube, FLEET, node_pod(s), s) == pod
    # The next server on that node takes the next host port.
    main = pods.server_pod(FLEET, "f-main", "main", pods.server_pod_spec("f", s, "main"))
    placed = await exposure.prepare_pod(kube, FLEET, main, s)
    assert placed is not None and exposure.advertised(placed) == "192.168.1.4:5061"


async def test_host_port_mode_says_when_no_node_has_the_chosen_address_type() -> None:
    s = SipFleetSpec.model_validate(
        {
            "mainServer": {"domain": "example.com"},
            "exposure": {"mode": "HostPort", "nodeAddressType": "ExternalIP"},
        }
    )
    kube = FakeKube()
    with pytest.raises(exposure.NoHostSlot, match="no schedulable node has an ExternalIP") as err:
        await exposure.prepare_pod(kube, FLEET, node_pod(s), s)
    assert err.value.reason == "NodeAddressMissing"
    kube.nodes = [ready_node("n1", InternalIP="192.168.1.4", ExternalIP="203.0.113.4")]
    pod = await exposure.prepare_pod(kube, FLEET, node_pod(s), s)
    assert pod is not None and exposure.advertised(pod) == "203.0.113.4:5060"
    ports = pod["spec"]["containers"][0]["ports"]
    assert {p.get("hostIP") for p in ports if p.get("hostPort")} == {"192.168.1.4"}


def test_entry_point_and_status_show_the_addresses() -> None:
    svc = exposure.entry_service(FLEET, spec())
    assert exposure.entry_point(svc) == "f-sip.ns.svc:5070"
    assert exposure.entry_point(None) is None
    svc = exposure.entry_service(FLEET, spec(entry="NodePort"))
    svc["spec"]["ports"][0]["nodePort"] = 30070
    assert exposure.entry_point(svc) == "<node>:30070"
    svc = exposure.entry_service(FLEET, spec(entry="LoadBalancer"))
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}
    assert exposure.entry_point(svc) == "203.0.113.1:5070"
    s = spec("HostPort")
    node = exposure.expose_pod(node_pod(s), "HostPort", slot=SLOT)
    node["status"] = {"hostIP": "192.168.1.4", "podIP": "10.1.0.7", "phase": "Running"}
    main = pods.server_pod(FLEET, "f-main", "main", pods.server_pod_spec("f", s, "main"))
    main = exposure.expose_pod(
        main, "HostPort", slot=hostports.HostSlot("n2", "192.168.1.5", "192.168.1.5", 5070)
    )
    main["status"] = {"hostIP": "192.168.1.5", "podIP": "10.1.0.8"}
    status = fleet_status(
        main, [node], {}, 1, None, datetime.now(UTC), entry_point="203.0.113.1:5070"
    )
    assert status["mainServer"]["advertised"] == "192.168.1.5:5070"
    assert status["nodes"][0]["advertised"] == "203.0.113.4:5061"
    assert status["entryPoint"] == "203.0.113.1:5070"
    exposed = {c["type"]: c for c in status["conditions"]}["Exposed"]
    assert (exposed["status"], exposed["reason"]) == ("True", "ServersPlaced")
    unplaced = ("NodeAddressMissing", "main server: no schedulable node has an ExternalIP")
    status = fleet_status(None, [], {}, 1, None, datetime.now(UTC), unplaced=unplaced)
    exposed = {c["type"]: c for c in status["conditions"]}["Exposed"]
    assert (exposed["status"], exposed["reason"], exposed["message"]) == ("False", *unplaced)


async def test_trusted_proxies_reach_every_server_and_must_be_addresses() -> None:
    s = SipFleetSpec.model_validate(
        {
            "mainServer": {"domain": "example.com"},
            "exposure": {"trustedProxies": ["192.0.2.1", "2001:db8::7"]},
        }
    )
    pod = await exposure.prepare_pod(FakeKube(), FLEET, node_pod(s), s)
    assert pod is not None
    assert env(pod)["SIPFLEET_TRUSTED_PROXIES"]["value"] == "192.0.2.1,2001:db8::7"
    plain = await exposure.prepare_pod(FakeKube(), FLEET, node_pod(spec()), spec())
    assert plain is not None and "SIPFLEET_TRUSTED_PROXIES" not in env(plain)
    with pytest.raises(ValueError, match=r"edge\.example\.com"):
        SipFleetSpec.model_validate(
            {
                "mainServer": {"domain": "example.com"},
                "exposure": {"trustedProxies": ["edge.example.com"]},
            }
        )


async def test_two_servers_placed_at_once_get_different_host_ports() -> None:
    """The fleet handler places the main server while a conference places a node:
    listing, choosing and creating are one step, so they never pick one port."""
    s = spec("HostPort")
    kube = FakeKube()
    main = pods.server_pod(FLEET, "f-main", "main", pods.server_pod_spec("f", s, "main"))
    placed = await asyncio.gather(
        exposure.prepare_pod(kube, FLEET, main, s),
        exposure.prepare_pod(kube, FLEET, node_pod(s), s),
    )
    assert sorted(exposure.advertised(p) or "" for p in placed) == [
        "192.168.1.4:5060",
        "192.168.1.4:5061",
    ]
