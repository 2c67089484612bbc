"""Which node Pods run the fleet's current node template (pure).

A node Pod records the template it was built from in the annotation
``sipfleet.io/template-hash``: a digest of its Pod ``spec`` as the operator
builds it from the SipFleet (image, env, resources, ports, grace period;
nothing that differs between two nodes of one fleet). When the SipFleet's
node template changes, the digest changes, running nodes become
*outdated*, and the planner rolls them over (``planner.rollout``). The
main server records its own digest (``main_template_hash``) and is rolled
last, alone, once every node is updated and Ready (``planner.roll_main``).

A Pod without the annotation (made by an operator before rolling updates)
is taken as current: it is never stopped just because the operator was
upgraded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sipfleet.operator import pods as podlib
from sipfleet.operator.models import SipFleetSpec

TEMPLATE_HASH = "sipfleet.io/template-hash"


def node_template_hash(fleet_body: Mapping[str, Any], spec: SipFleetSpec) -> str:
    """The digest (16 hex digits) of the node Pod spec the fleet asks for now."""
    return template_hash(fleet_body, spec, "node")


def main_template_hash(fleet_body: Mapping[str, Any], spec: SipFleetSpec) -> str:
    """The digest (16 hex digits) of the main server Pod spec the fleet asks for
    now (the node template's image, env and grace period; the main server's
    ports; no resources)."""
    return template_hash(fleet_body, spec, "main")


def template_hash(fleet_body: Mapping[str, Any], spec: SipFleetSpec, role: podlib.Role) -> str:
    """The digest (16 hex digits) of the Pod spec of a server of ``role``."""
    fleet = fleet_body["metadata"]["name"]
    name = podlib.node_pod_name(fleet, 0) if role == "node" else podlib.main_pod_name(fleet)
    pod = podlib.server_pod(
        fleet_body,
        name,
        role,
        podlib.server_pod_spec(fleet, spec, role),
        0 if role == "node" else None,
    )
    text = json.dumps(pod["spec"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def template_of(pod: Mapping[str, Any]) -> str | None:
    """The template digest a Pod was built from (None: not recorded)."""
    annotations: Mapping[str, str] = pod.get("metadata", {}).get("annotations") or {}
    return annotations.get(TEMPLATE_HASH)


def outdated(pod: Mapping[str, Any], current: str) -> bool:
    """Whether the Pod was built from another template than ``current``."""
    recorded = template_of(pod)
    return recorded is not None and recorded != current
