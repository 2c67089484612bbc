"""Where a server runs in the HostPort exposure mode: a node and a host port.

In HostPort mode a server is reached at its Kubernetes node's address and a
host port (docs/install.md, "Reaching the fleet"). The downward API only gives
a Pod its node's InternalIP, and only after scheduling, so the operator
chooses the node itself before it creates the Pod:

- a candidate node is Ready, not cordoned, has no NoSchedule/NoExecute taint
  the Pod does not tolerate, and has an address of the type the spec names
  (``spec.exposure.nodeAddressType``: InternalIP or ExternalIP);
- of the candidates, the one with the fewest servers of this fleet (spread),
  then the name;
- the host port is the lowest one of ``spec.exposure.hostPorts`` no Pod on
  that node (any namespace, not finished) holds, so two servers on one node
  never collide, whatever fleet or workload holds the others.

The Pod is then pinned to that node (required node affinity on
``metadata.name``, as a DaemonSet does) and binds the port on the node's
InternalIP only (``hostIP``). Everything here is pure: nodes and Pods in,
a `HostSlot` or `NoHostSlot` out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sipfleet.operator.models import NodeAddressType

_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
_FINISHED = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class HostSlot:
    """One server's place: `node` by name, the `address` it advertises, the
    InternalIP its host port binds (`host_ip`, None if the node has none) and
    the host `port` (UDP and TCP alike)."""

    node: str
    address: str
    host_ip: str | None
    port: int


class NoHostSlot(Exception):
    """No node can take the server now; `reason` is the Event reason
    (``NodeAddressMissing``, ``HostPortsExhausted`` or ``NoSchedulableNode``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def node_address(node: Mapping[str, Any], kind: str) -> str | None:
    """The node's first address of type `kind` (``status.addresses``), or None."""
    for entry in (node.get("status") or {}).get("addresses") or []:
        if entry.get("type") == kind and entry.get("address"):
            return str(entry["address"])
    return None


def _ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _tolerated(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def schedulable(node: Mapping[str, Any], tolerations: Sequence[Mapping[str, Any]]) -> bool:
    """Ready, not cordoned, and every NoSchedule/NoExecute taint tolerated."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable") or not _ready(node):
        return False
    blocking = (t for t in spec.get("taints") or [] if t.get("effect") in _BLOCKING_EFFECTS)
    return all(_tolerated(t, tolerations) for t in blocking)


def pinned_node(pod: Mapping[str, Any]) -> str | None:
    """The node `pod` runs on or is pinned to (by `pin`), None if neither."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for term in required:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and len(field.get("values") or []) == 1:
                return str(field["values"][0])
    return None


def host_ports(pod: Mapping[str, Any]) -> set[int]:
    """The host ports `pod` holds (any protocol), none once it has finished."""
    if (pod.get("status") or {}).get("phase") in _FINISHED:
        return set()
    containers = (pod.get("spec") or {}).get("containers") or []
    return {
        int(p["hostPort"]) for c in containers for p in c.get("ports") or [] if p.get("hostPort")
    }


def choose(
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    *,
    address_type: NodeAddressType,
    ports: range,
    is_ours: tuple[str, Mapping[str, str]] | None = None,
    tolerations: Sequence[Mapping[str, Any]] = (),
) -> HostSlot:
    """The node and host port for one more server (see the module docstring).

    `pods` are all Pods of the cluster; `is_ours` the namespace and labels that
    mark this fleet's servers (for spreading). Raises NoHostSlot saying why none fits.
    """
    usable = [n for n in nodes if schedulable(n, tolerations)]
    if not usable:
        raise NoHostSlot("NoSchedulableNode", "no Ready, schedulable node for a HostPort server")
    with_address = [n for n in usable if node_address(n, address_type)]
    if not with_address:
        names = ", ".join(sorted(n["metadata"]["name"] for n in usable))
        raise NoHostSlot(
            "NodeAddressMissing",
            f"no schedulable node has an {address_type} ({names}); give the nodes one or "
            "set spec.exposure.nodeAddressType to the type they have",
        )
    used: dict[str, set[int]] = {}
    ours: dict[str, int] = {}
    namespace, selector = is_ours or ("", {})
    for pod in pods:
        on = pinned_node(pod)
        if on is None:
            continue
        used.setdefault(on, set()).update(host_ports(pod))
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        mine = is_ours is not None and meta.get("namespace") == namespace
        if mine and all(labels.get(k) == v for k, v in selector.items()):
            ours[on] = ours.get(on, 0) + 1
    best: tuple[int, str, int, Mapping[str, Any]] | None = None
    for node in with_address:
        name = node["metadata"]["name"]
        free = next((p for p in ports if p not in used.get(name, set())), None)
        if free is not None and (best is None or (ours.get(name, 0), name) < best[:2]):
            best = (ours.get(name, 0), name, free, node)
    if best is None:
        raise NoHostSlot(
            "HostPortsExhausted",
            f"every host port {ports.start}-{ports.stop - 1} is taken on every node with "
            f"an {address_type}; widen spec.exposure.hostPorts",
        )
    _, name, port, chosen = best
    address = node_address(chosen, address_type)
    assert address is not None  # `with_address` holds only nodes that have one
    return HostSlot(name, address, node_address(chosen, "InternalIP"), port)


def pin(pod: dict[str, Any], node: str) -> None:
    """Make `pod` schedulable on `node` only (required node affinity on
    ``metadata.name``, added to each existing term so they still apply)."""
    affinity = pod["spec"].setdefault("affinity", {}).setdefault("nodeAffinity", {})
    required = affinity.setdefault(
        "requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": [{}]}
    )
    field = {"key": "metadata.name", "operator": "In", "values": [node]}
    for term in required["nodeSelectorTerms"]:
        term.setdefault("matchFields", []).append(field)
