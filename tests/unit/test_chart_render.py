"""charts/sipfleet renders what the issue asks for, with defaults and with every option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chart_support import (
    ALL_OPTIONS,
    CHART,
    KUBE_VERSION,
    Manifest,
    by_kind,
    manifests,
    render,
    run_helm,
)

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
OPTIONAL_KINDS = {"SipFleet", "ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"}


@pytest.fixture(scope="module")
def default_docs() -> list[Manifest]:
    return manifests(render())


@pytest.fixture(scope="module")
def all_docs() -> list[Manifest]:
    return manifests(render(ALL_OPTIONS))


def _values(tmp_path: Path, values: dict[str, object]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("values", [[], ["--values", str(ALL_OPTIONS)]], ids=["default", "all"])
def test_helm_lint_strict(values: list[str]) -> None:
    run_helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *values)


def test_defaults_render_only_the_operator(default_docs: list[Manifest]) -> None:
    kinds = {d["kind"] for d in default_docs}
    assert not kinds & OPTIONAL_KINDS
    assert by_kind(default_docs, "ConfigMap") == []
    assert {"Deployment", "ServiceAccount", "CustomResourceDefinition"} <= kinds


def test_every_option_renders_its_objects(all_docs: list[Manifest]) -> None:
    kinds = {d["kind"] for d in all_docs}
    assert kinds >= OPTIONAL_KINDS | {"ConfigMap", "Service"}
    # One server policy per listed namespace, plus the operator's own.
    policies = by_kind(all_docs, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["default", "sip", "sipfleet"]


@pytest.mark.parametrize(
    ("option", "kinds"),
    [
        ({"defaultFleet": {"enabled": True}}, {"SipFleet"}),
        ({"metrics": {"serviceMonitor": {"enabled": True}}}, {"ServiceMonitor", "PodMonitor"}),
        ({"metrics": {"prometheusRule": {"enabled": True}}}, {"PrometheusRule"}),
        ({"networkPolicy": {"enabled": True}}, {"NetworkPolicy"}),
    ],
)
def test_one_value_turns_on_one_feature(
    tmp_path: Path, option: dict[str, object], kinds: set[str]
) -> None:
    docs = manifests(render(_values(tmp_path, option)))
    assert {d["kind"] for d in docs} & OPTIONAL_KINDS == kinds


def test_dashboard_value_adds_the_dashboard_configmap(tmp_path: Path) -> None:
    docs = manifests(
        render(_values(tmp_path, {"metrics": {"grafanaDashboard": {"enabled": True}}}))
    )
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["sipfleet.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "sipfleet_node_members",
        "up{",
        "sipfleet_node_redirects_total",
        "sipfleet_node_transfers_total",
        "sipfleet_node_fanout_seconds_bucket",
    ):
        assert metric in exprs, f"dashboard has no panel on {metric}"


def test_operator_deployment_is_ha_probed_and_restricted(default_docs: list[Manifest]) -> None:
    (dep,) = by_kind(default_docs, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "sipfleet/operator:0.1.0"
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e for e in container["env"]}
    # The operator elects a leader only when given a Lease name (peering).
    assert env["SIPFLEET_OPERATOR_PEERING"]["value"] == "sf-sipfleet-operator"
    assert env["SIPFLEET_OPERATOR_ALL_NAMESPACES"]["value"] == "1"
    assert pod["serviceAccountName"] == "sf-sipfleet-operator"
    (pdb,) = by_kind(default_docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == spec["selector"]


def test_watch_namespaces_replace_cluster_wide(all_docs: list[Manifest]) -> None:
    (dep,) = by_kind(all_docs, "Deployment")
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SIPFLEET_OPERATOR_NAMESPACES"] == "default,sip"
    assert "SIPFLEET_OPERATOR_ALL_NAMESPACES" not in env


def test_single_replica_has_no_disruption_budget(tmp_path: Path) -> None:
    docs = manifests(render(_values(tmp_path, {"operator": {"replicas": 1}})))
    assert by_kind(docs, "PodDisruptionBudget") == []
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1


def test_existing_service_account_without_rbac(tmp_path: Path) -> None:
    values = {"serviceAccount": {"create": False, "name": "ops"}, "rbac": {"create": False}}
    docs = manifests(render(_values(tmp_path, values)))
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_existing_service_account_needs_a_name(tmp_path: Path) -> None:
    values = _values(tmp_path, {"serviceAccount": {"create": False}})
    proc = run_helm(
        "template",
        "sf",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--values",
        str(values),
        check=False,
    )
    assert "serviceAccount.name is required when serviceAccount.create is false" in proc.stderr


def test_image_tag_override(tmp_path: Path) -> None:
    docs = manifests(render(_values(tmp_path, {"image": {"tag": "dev", "repository": "r/op"}})))
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "r/op:dev"


def test_every_object_has_the_standard_labels(all_docs: list[Manifest]) -> None:
    for doc in all_docs:
        if doc["kind"] == "CustomResourceDefinition":
            continue  # crds/ is copied verbatim from the top-level crds/
        labels = doc["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"


def test_alerts_cover_the_four_failure_modes(all_docs: list[Manifest]) -> None:
    (rule,) = by_kind(all_docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "SipFleetAtMaxNodes",
        "SipFleetMetricsStale",
        "SipFleetTransfersFailing",
        "SipFleetNodeNotReady",
    }


def test_default_fleet_carries_the_exposure_choice(all_docs: list[Manifest]) -> None:
    """The chart's values pick the exposure mode (docs/install.md, "Reaching the fleet")."""
    (fleet,) = [d for d in all_docs if d["kind"] == "SipFleet"]
    assert fleet["spec"]["exposure"] == {
        "mode": "HostPort",
        "entryServiceType": "LoadBalancer",
        "nodeAddressType": "ExternalIP",
        "hostPorts": {"first": 5080, "last": 5089},
        "trustedProxies": ["192.0.2.1"],
    }


def test_server_network_policy_opens_sip_and_guards_admin(all_docs: list[Manifest]) -> None:
    policy = next(
        p for p in by_kind(all_docs, "NetworkPolicy") if p["metadata"]["namespace"] == "sip"
    )
    sip_rule, admin_rule = policy["spec"]["ingress"]
    assert "from" not in sip_rule  # SIP from anywhere
    assert {(p["port"], p["protocol"]) for p in sip_rule["ports"]} == {
        ("sip-udp", "UDP"),
        ("sip-tcp", "TCP"),
        ("sip-tls", "TCP"),
        ("sip-ws", "TCP"),
        ("sip-wss", "TCP"),
    }
    assert admin_rule["ports"] == [{"port": "admin", "protocol": "TCP"}]
    operator_peer = admin_rule["from"][0]
    assert operator_peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert operator_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "sipfleet"
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator": {"replicas": "two"}}, "at '/operator/replicas': got string, want integer"),
        ({"operator": {"replica": 2}}, "additional properties 'replica' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
        ({"metrics": {"prometheusRule": {"for": "5 minutes"}}}, "at '/metrics/prometheusRule/for'"),
        (
            {"networkPolicy": {"namespaces": ["Not_A_Namespace"]}},
            "at '/networkPolicy/namespaces/0'",
        ),
        (
            {"defaultFleet": {"enabled": True, "name": "Main_Fleet"}},
            "at '/defaultFleet/name'",
        ),
        (
            {"defaultFleet": {"spec": {"exposure": {"mode": "HostNetwork"}}}},
            "at '/defaultFleet/spec/exposure/mode'",
        ),
        (
            {"defaultFleet": {"spec": {"exposure": {"nodeAddressType": "Hostname"}}}},
            "at '/defaultFleet/spec/exposure/nodeAddressType'",
        ),
    ],
)
def test_schema_rejects_wrong_values_clearly(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    proc = run_helm(
        "template",
        "sf",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--values",
        str(_values(tmp_path, values)),
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
