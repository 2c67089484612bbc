"""Operator-created server Pods meet the restricted Pod Security Standard.

The real check is tests/e2e/test_realnode.py (a namespace enforcing
``restricted`` admits the fleet); this one pins each field the standard asks
for (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
"""

from __future__ import annotations

from typing import Any

import pytest
from sipfleet.operator import pods
from sipfleet.operator.models import SipFleetSpec

FLEET: dict[str, Any] = {
    "apiVersion": "sipfleet.io/v1alpha1",
    "kind": "SipFleet",
    "metadata": {"name": "f", "namespace": "ns", "uid": "u-1"},
}
SPEC = SipFleetSpec.model_validate({"mainServer": {"domain": "example.com"}})

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("role", ["main", "node"])
def test_server_pod_is_restricted(role: pods.Role) -> None:
    pod = pods.server_pod(FLEET, f"f-{role}", role, pods.server_pod_spec("f", SPEC, role))
    pod_sc = pod["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == pod_sc["runAsGroup"] == pods.SERVER_UID != 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["spec"]["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in sc and "add" not in sc["capabilities"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert set(volumes["tmp"]) == {"name", "emptyDir"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert not any("hostPath" in v for v in volumes.values())


def test_security_contexts_are_not_shared_between_pods() -> None:
    spec = pods.server_pod_spec("f", SPEC, "node")
    a = pods.server_pod(FLEET, "f-node-1", "node", spec, 1)
    b = pods.server_pod(FLEET, "f-node-2", "node", spec, 2)
    a["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"].append("X")
    assert b["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
