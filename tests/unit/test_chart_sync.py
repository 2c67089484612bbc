"""The chart's CRDs and RBAC equal their single sources (crds/, operator/deploy/rbac.yaml)."""

from __future__ import annotations

import subprocess

import yaml
from chart_support import ALL_OPTIONS, CHART, REPO, by_kind, manifests, render

OPERATOR_RBAC = REPO / "operator" / "deploy" / "rbac.yaml"
FIX = "run charts/sync-crds.sh"


def test_chart_crds_are_the_generated_crds() -> None:
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert source, "crds/ is empty: python -m sipfleet.operator.crdgen"
    assert sorted(chart) == sorted(source), FIX
    for name, text in source.items():
        assert chart[name] == text, f"charts/sipfleet/crds/{name} differs from crds/{name}: {FIX}"


def test_chart_rbac_copy_is_the_operator_rbac() -> None:
    copy = CHART / "files" / "operator-rbac.yaml"
    assert copy.read_bytes() == OPERATOR_RBAC.read_bytes(), FIX


def test_sync_script_check_mode_agrees() -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "charts" / "sync-crds.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_rendered_rules_equal_operator_deploy_rules() -> None:
    (source,) = by_kind(
        [d for d in yaml.safe_load_all(OPERATOR_RBAC.read_text()) if d], "ClusterRole"
    )
    for docs in (manifests(render()), manifests(render(ALL_OPTIONS))):
        (role,) = by_kind(docs, "ClusterRole")
        assert role["rules"] == source["rules"]


def test_rbac_has_no_wildcards_and_binds_the_chart_service_account() -> None:
    docs = manifests(render())
    (role,) = by_kind(docs, "ClusterRole")
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    (account,) = by_kind(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
