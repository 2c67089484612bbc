"""How members reach the servers: the Services and Pod settings of each exposure mode.

A SIP server writes its own address into what it sends (Via, Contact, the 302's
Contact, Refer-To, SDP), and NAT rewrites packets, not messages: so each server
must be told the address members reach it at (`sipfleet-node --advertise-host`,
docs/transport.md). Modes (`spec.exposure.mode`, docs/install.md):

- ``PodIP``: nothing advertised; the Pod IP is written (today's behaviour).
- ``HostPort``: the operator places the server on a node that has the address
  type the spec names (InternalIP or ExternalIP) and gives it the lowest host
  port of ``spec.exposure.hostPorts`` no Pod on that node holds (hostports.py);
  the Pod is pinned there, the host port maps to its SIP port on the node's
  InternalIP, and it advertises that node address and host port.
- ``NodePort`` / ``LoadBalancer``: a Service ``<pod>-sip`` per server, created
  before its Pod. The Pod is created only once the Service has an address (its
  node ports; a load-balancer IP), so no join or transfer is routed to a server
  members cannot reach. NodePort advertises the Pod's node (``status.hostIP``)
  with externalTrafficPolicy Local: only that node forwards, and the member's
  source address is kept, so responses routed by Via/rport reach it
  (kubernetes #18933). Both Service ports have the same port number, so the
  API server gives them the same node port: the one port a shard URI carries
  is right for UDP and TCP members alike.

Every mode has ``<fleet>-sip``, the main server's Service: the fleet's entry
point. The builders are pure; `prepare_pod` is the thin I/O step.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sipfleet.operator import hostports
from sipfleet.operator import pods as podlib
from sipfleet.operator.hostports import HostSlot
from sipfleet.operator.hostports import NoHostSlot as NoHostSlot
from sipfleet.operator.kube import Obj
from sipfleet.operator.models import ExposureMode, SipFleetSpec

LABEL_SERVER = "sipfleet.io/server"
"""Every server Pod carries its own name here: the selector of its Service."""
HOST_IP = "status.hostIP"
PER_SERVER_SERVICE: frozenset[str] = frozenset({"NodePort", "LoadBalancer"})
_SIP_PORTS = ("sip-udp", "sip-tcp")
_SERVER_SET = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
"""Pod metadata the API server sets, which a create request must not carry."""


@dataclass(frozen=True)
class Address:
    """Where members reach one server; `host` None means its node's address."""

    host: str | None
    udp_port: int
    tcp_port: int


def entry_service_name(fleet: str) -> str:
    """The fleet's entry Service, in front of its main server: ``<fleet>-sip``."""
    return f"{fleet}-sip"


def server_service_name(pod_name: str) -> str:
    """One server's own Service (NodePort, LoadBalancer modes): ``<pod>-sip``."""
    return f"{pod_name}-sip"


def _service(
    fleet_body: Mapping[str, Any],
    name: str,
    selector: Mapping[str, str],
    port: int,
    service_type: str,
    streams: list[tuple[str, int]] | None = None,
) -> Obj:
    spec: Obj = {
        "type": service_type,
        "selector": dict(selector),
        "ports": [
            {"name": "sip-udp", "protocol": "UDP", "port": port, "targetPort": port},
            {"name": "sip-tcp", "protocol": "TCP", "port": port, "targetPort": port},
            *(
                {"name": name, "protocol": "TCP", "port": p, "targetPort": p}
                for name, p in streams or []
            ),
        ],
    }
    if service_type != "ClusterIP":
        # Keep the member's source address and forward only on the Pod's node:
        # with SNAT, answers routed by Via go to the node, not to the member.
        spec["externalTrafficPolicy"] = "Local"
    fleet = fleet_body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": fleet_body["metadata"]["namespace"],
            "labels": {podlib.LABEL_FLEET: fleet},
            "ownerReferences": [podlib.owner_reference(fleet_body)],
        },
        "spec": spec,
    }


def entry_service(fleet_body: Mapping[str, Any], spec: SipFleetSpec) -> Obj:
    """``<fleet>-sip``: UDP and TCP to the main server, of the type the spec names,
    plus its TLS and WebSocket ports when the spec turns them on."""
    fleet = fleet_body["metadata"]["name"]
    return _service(
        fleet_body,
        entry_service_name(fleet),
        {podlib.LABEL_FLEET: fleet, podlib.LABEL_ROLE: "main"},
        spec.main_server.sip_port,
        spec.exposure.entry_service_type,
        podlib.stream_ports(podlib.server_pod_spec(fleet, spec, "main")),
    )


def server_service(
    fleet_body: Mapping[str, Any], pod_name: str, sip_port: int, mode: ExposureMode
) -> Obj:
    """``<pod>-sip``, the one server's own Service (NodePort or LoadBalancer mode)."""
    if mode not in PER_SERVER_SERVICE:
        raise ValueError(f"mode {mode} has no per-server Service")
    return _service(
        fleet_body, server_service_name(pod_name), {LABEL_SERVER: pod_name}, sip_port, mode
    )


def service_address(service: Mapping[str, Any]) -> Address | None:
    """The address a NodePort or LoadBalancer Service gives members, None while it
    has none (no node ports yet, no load-balancer IP yet). A load balancer that
    hands out a host name only is None too: servers advertise IP addresses."""
    spec = service.get("spec") or {}
    ports = {p.get("protocol"): p for p in spec.get("ports") or []}
    if "UDP" not in ports or "TCP" not in ports:
        return None
    if spec.get("type") == "NodePort":
        udp, tcp = ports["UDP"].get("nodePort"), ports["TCP"].get("nodePort")
        return Address(None, int(udp), int(tcp)) if udp and tcp else None
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ip = next((i["ip"] for i in ingress if i.get("ip")), None)
    if ip is None:
        return None
    return Address(ip, int(ports["UDP"]["port"]), int(ports["TCP"]["port"]))


def _env_value(name: str, value: str | None) -> Obj:
    if value is None:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": HOST_IP}}}
    return {"name": name, "value": value}


def expose_pod(
    pod: Obj, mode: ExposureMode, address: Address | None = None, slot: HostSlot | None = None
) -> Obj:
    """A copy of a server Pod manifest set up for `mode`: its `LABEL_SERVER`
    label, its node and host ports (HostPort, from `slot`) and the advertised
    address in its env. Raises ValueError when a per-server mode has no
    `address` or HostPort no `slot`."""
    out = copy.deepcopy(pod)
    name = out["metadata"]["name"]
    out["metadata"].setdefault("labels", {})[LABEL_SERVER] = name
    container = out["spec"]["containers"][0]
    if mode == "PodIP":
        return out
    if mode == "HostPort":
        if slot is None:
            raise ValueError(f"{name}: mode HostPort needs a node and host port")
        hostports.pin(out, slot.node)
        for port in container["ports"]:
            if port["name"] in _SIP_PORTS:
                port["hostPort"] = slot.port
                if slot.host_ip:
                    port["hostIP"] = slot.host_ip  # DNAT only what is sent to the node
        address = Address(slot.address, slot.port, slot.port)
    elif address is None:
        raise ValueError(f"{name}: mode {mode} needs its Service's address")
    env = container["env"]
    env.append(_env_value("SIPFLEET_ADVERTISE_HOST", address.host))
    if address.udp_port:
        env.append({"name": "SIPFLEET_ADVERTISE_UDP_PORT", "value": str(address.udp_port)})
    if address.tcp_port:
        env.append({"name": "SIPFLEET_ADVERTISE_TCP_PORT", "value": str(address.tcp_port)})
    return out


def advertised(pod: Mapping[str, Any]) -> str | None:
    """``host:port`` (``host:udp/udp,tcp/tcp`` when they differ) the server in `pod`
    advertises, from its env and status; None until the address is known."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return None
    env = {e["name"]: e for e in containers[0].get("env") or []}
    status = pod.get("status") or {}

    def value(name: str) -> str | None:
        entry = env.get(name)
        if entry is None:
            return None
        if "value" in entry:
            return str(entry["value"])
        path = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        return status.get("hostIP" if path == HOST_IP else "podIP")

    advertises = "SIPFLEET_ADVERTISE_HOST" in env
    host = value("SIPFLEET_ADVERTISE_HOST") if advertises else status.get("podIP")
    sip = value("SIPFLEET_SIP_PORT") or str(podlib.SIP_PORT)
    udp = value("SIPFLEET_ADVERTISE_UDP_PORT") or sip
    tcp = value("SIPFLEET_ADVERTISE_TCP_PORT") or sip
    if not host:
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{udp}" if udp == tcp else f"{shown}:{udp}/udp,{tcp}/tcp"


def entry_point(service: Mapping[str, Any] | None) -> str | None:
    """Where members join, from the entry Service: its load-balancer IP, else
    ``<any node>:<node port>``, else its cluster DNS name; None without a Service."""
    if service is None:
        return None
    meta, spec = service["metadata"], service.get("spec") or {}
    ports = spec.get("ports") or [{}]
    port = ports[0].get("port", podlib.SIP_PORT)
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ip = next((i["ip"] for i in ingress if i.get("ip")), None)
    if ip:
        return f"{ip}:{port}"
    if spec.get("type") in ("NodePort", "LoadBalancer") and ports[0].get("nodePort"):
        return f"<node>:{ports[0]['nodePort']}"
    return f"{meta['name']}.{meta['namespace']}.svc:{port}"


def trust_proxies(pod: Obj, proxies: Sequence[str]) -> Obj:
    """`pod` with ``SIPFLEET_TRUSTED_PROXIES`` set to `proxies` (a copy), or as is
    when there are none."""
    if not proxies:
        return pod
    out = copy.deepcopy(pod)
    env = out["spec"]["containers"][0].setdefault("env", [])
    env.append({"name": "SIPFLEET_TRUSTED_PROXIES", "value": ",".join(proxies)})
    return out


class ExposureApi(Protocol):
    """The part of `kube.Kube` that `prepare_pod` uses."""

    async def ensure_service(self, namespace: str, body: Obj) -> Obj: ...

    async def list_all_pods(self) -> list[Obj]: ...

    async def list_nodes(self) -> list[Obj]: ...

    async def ensure_pod(self, namespace: str, body: Obj) -> Obj: ...


_PLACING = asyncio.Lock()
"""Held while a HostPort server is placed and created (one operator leader acts)."""


async def _place(
    kube: ExposureApi, fleet_body: Mapping[str, Any], pod: Obj, spec: SipFleetSpec
) -> Obj:
    """`pod` pinned to a node with a free host port (hostports.py) and created; if
    it exists already, its stored manifest without what the API server sets (it
    was placed when it was created). Listing, choosing and creating happen under
    `_PLACING`, so two servers placed at once never pick the same port."""
    meta = pod["metadata"]
    async with _PLACING:
        everything = await kube.list_all_pods()
        for stored in everything:
            if (stored["metadata"]["namespace"], stored["metadata"]["name"]) == (
                meta["namespace"],
                meta["name"],
            ):
                again = copy.deepcopy(stored)
                again.pop("status", None)
                again["spec"].pop("nodeName", None)
                for key in _SERVER_SET:
                    again["metadata"].pop(key, None)
                return again
        slot = hostports.choose(
            await kube.list_nodes(),
            everything,
            address_type=spec.exposure.node_address_type,
            ports=spec.exposure.host_ports.ports(),
            is_ours=(meta["namespace"], {podlib.LABEL_FLEET: fleet_body["metadata"]["name"]}),
            tolerations=pod["spec"].get("tolerations") or (),
        )
        placed = expose_pod(pod, "HostPort", slot=slot)
        await kube.ensure_pod(meta["namespace"], placed)
        return placed


async def prepare_pod(
    kube: ExposureApi, fleet_body: Mapping[str, Any], pod: Obj, spec: SipFleetSpec
) -> Obj | None:
    """`pod` set up for the fleet's exposure mode; in a per-server mode its Service
    is ensured first and None is returned while that Service has no address (the
    caller creates the Pod on a later pass). In HostPort mode the Pod is created
    here already (see `_place`; the caller's create then finds it). Raises
    NoHostSlot when HostPort mode finds no node for it (its `reason` is the Event
    reason), and what the Kubernetes API raises."""
    pod = trust_proxies(pod, spec.exposure.trusted_proxies)
    mode = spec.exposure.mode
    if mode == "HostPort":
        return await _place(kube, fleet_body, pod, spec)
    if mode not in PER_SERVER_SERVICE:
        return expose_pod(pod, mode)
    name = pod["metadata"]["name"]
    ports = pod["spec"]["containers"][0]["ports"]
    sip_port = int(next(p["containerPort"] for p in ports if p["name"] == "sip-udp"))
    service = await kube.ensure_service(
        fleet_body["metadata"]["namespace"], server_service(fleet_body, name, sip_port, mode)
    )
    address = service_address(service)
    return None if address is None else expose_pod(pod, mode, address)
