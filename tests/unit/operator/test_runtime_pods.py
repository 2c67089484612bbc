"""Server Pod and admin-token Secret builders and readers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sipfleet.node.restore import Hosted
from sipfleet.operator import pods
from sipfleet.operator.models import SipFleetSpec

FLEET: dict[str, Any] = {
    "apiVersion": "sipfleet.io/v1alpha1",
    "kind": "SipFleet",
    "metadata": {"name": "small", "namespace": "demo", "uid": "u-1"},
}
SPEC = SipFleetSpec.model_validate(
    {
        "mainServer": {"domain": "example.com", "adminPort": 9090},
        "nodeTemplate": {
            "image": "sipfleet/node:dev",
            "env": [{"name": "SIPFLEET_LOG_LEVEL", "value": "debug"}],
            "resources": {"limits": {"cpu": "500m"}},
        },
        "treeFanout": 4,
    }
)


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]
    }


def test_names_are_deterministic_and_parse_back() -> None:
    assert pods.main_pod_name("small") == "small-main"
    assert pods.node_pod_name("small", 3) == "small-node-3"
    assert pods.node_index("small-node-3") == 3
    assert pods.node_index("my-fleet-node-12") == 12
    assert pods.node_index("small-main") is None
    assert pods.node_index("small-node-x") is None


def test_token_secret_is_owned_random_and_readable() -> None:
    a = pods.token_secret("small-admin-token", FLEET)
    b = pods.token_secret("small-admin-token", FLEET)
    assert pods.secret_token(a) != pods.secret_token(b)
    assert len(pods.secret_token(a)) >= 32
    assert a["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pods.secret_token(pods.token_secret("s", FLEET, token="given")) == "given"


@pytest.mark.parametrize(
    ("data", "needle"),
    [({}, "no 'token' key"), ({"token": base64.b64encode(b"  \n").decode()}, "empty")],
)
def test_unusable_token_secret_says_what_to_fix(data: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        pods.secret_token({"metadata": {"name": "s"}, "data": data})


def test_secret_name_defaults_to_fleet_admin_token() -> None:
    assert pods.token_secret_name("small", SPEC) == "small-admin-token"
    named = SPEC.model_copy(update={"admin_token_secret": "mine"})
    assert pods.token_secret_name("small", named) == "mine"


def test_main_pod_runs_the_node_image_as_main_with_the_token_mounted() -> None:
    spec = pods.server_pod_spec("small", SPEC, "main")
    pod = pods.server_pod(FLEET, "small-main", "main", spec)
    env = env_of(pod)
    assert env["SIPFLEET_ROLE"] == "main"
    assert env["SIPFLEET_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["SIPFLEET_LISTEN"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["SIPFLEET_DOMAIN"] == "example.com"
    assert env["SIPFLEET_ADMIN_PORT"] == "9090"
    assert env["SIPFLEET_TREE_FANOUT"] == "4"
    assert env["SIPFLEET_TOKEN_FILE"] == f"{pods.TOKEN_MOUNT}/token"
    assert env["SIPFLEET_HOSTED_FILE"] == "/tmp/sipfleet-hosted.json"  # in the emptyDir
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["spec"]["containers"][0]["volumeMounts"]
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == "small-admin-token"
    c = pod["spec"]["containers"][0]
    assert c["image"] == "sipfleet/node:dev"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9090}
    assert "resources" not in c
    assert pod["metadata"]["labels"] == {pods.LABEL_FLEET: "small", pods.LABEL_ROLE: "main"}
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref == {
        "apiVersion": "sipfleet.io/v1alpha1",
        "kind": "SipFleet",
        "name": "small",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_only_the_main_pod_reads_its_expected_groups_from_its_annotation() -> None:
    """A new main Pod (rollout, eviction) learns its groups from the operator: the
    annotation is mounted through the downward API; the builder's value is a hosted
    file the server reads (sip-node restore.Hosted), member counts 0."""
    main = pods.server_pod(FLEET, "small-main", "main", pods.server_pod_spec("small", SPEC, "main"))
    assert env_of(main)["SIPFLEET_EXPECTED_GROUPS_FILE"] == "/etc/sipfleet/podinfo/expected-groups"
    (volume,) = [v for v in main["spec"]["volumes"] if v["name"] == "podinfo"]
    item = volume["downwardAPI"]["items"][0]
    assert item == {
        "path": "expected-groups",
        "fieldRef": {"fieldPath": "metadata.annotations['sipfleet.io/expected-groups']"},
    }
    mount = {"name": "podinfo", "mountPath": "/etc/sipfleet/podinfo", "readOnly": True}
    assert mount in main["spec"]["containers"][0]["volumeMounts"]
    node = pods.server_pod(
        FLEET, "small-node-1", "node", pods.server_pod_spec("small", SPEC, "node"), 1
    )
    assert "SIPFLEET_EXPECTED_GROUPS_FILE" not in env_of(node)
    assert all(v["name"] != "podinfo" for v in node["spec"]["volumes"])
    annotation = pods.expected_groups(
        ["sip:b@example.com", "sip:a@example.com", "sip:a@example.com"]
    )
    hosted = Hosted.from_bytes(annotation[pods.EXPECTED_GROUPS].encode())
    assert hosted.members == {"sip:a@example.com": 0, "sip:b@example.com": 0}
    assert pods.expected_groups([]) == {}


def test_node_pod_is_labelled_for_its_conference() -> None:
    spec = pods.server_pod_spec("small", SPEC, "node", "conf3")
    pod = pods.server_pod(FLEET, "small-node-2", "node", spec, 2)
    labels = pod["metadata"]["labels"]
    assert labels[pods.LABEL_CONFERENCE] == "conf3"
    assert labels[pods.LABEL_INDEX] == "2"
    assert pods.conference_of(pod) == "conf3"
    assert env_of(pod)["SIPFLEET_LOG_LEVEL"] == "debug"
    assert env_of(pod)["SIPFLEET_ADMIN_PORT"] == "8080"
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m"}}
    assert pods.fleet_selector("small", "node") == "sipfleet.io/fleet=small,sipfleet.io/role=node"


def running(ready: str = "True", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", **meta},
        "spec": {"containers": [{"ports": [{"name": "admin", "containerPort": 9090}]}]},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.12",
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def test_readiness_comes_from_the_ready_condition() -> None:
    assert pods.pod_ready(running())
    assert not pods.pod_ready(running("False"))
    assert not pods.pod_ready(running(deletionTimestamp="2026-01-01T00:00:00Z"))
    assert not pods.pod_ready({"metadata": {}, "status": {"phase": "Pending"}})


def test_admin_url_uses_the_named_port() -> None:
    assert pods.admin_url(running()) == "http://127.0.0.12:9090"
    assert pods.admin_url({"metadata": {}, "status": {}}) is None
    assert pods.admin_url({"status": {"podIP": "127.0.0.5"}}) == "http://127.0.0.5:8080"
