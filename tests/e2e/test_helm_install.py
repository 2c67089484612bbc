"""`helm install` on the local control plane runs the operator; an example reconciles.

The real node runs the operator image (built from this checkout by the
session's `dev up`) with its ServiceAccount's token, so the chart's RBAC is
what the operator really gets. The release namespace enforces the restricted Pod
Security Standard, so the API server refuses operator Pods that fall short.
`helm uninstall` must leave nothing behind but the CRDs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from chart_support import CHART, REPO, chart_cluster, run_helm
from kube_support import get_json, wait_for
from sipfleet.devcluster.cluster import Cluster

RELEASE = "sfh"
NAMESPACE = "sipfleet-helm"
EXAMPLE_NS = "helm-example"
EXAMPLE = REPO / "examples" / "small-conference.yaml"
OPERATOR = "app.kubernetes.io/component=operator,app.kubernetes.io/instance=" + RELEASE
LEASE = f"{RELEASE}-sipfleet-operator"
# Objects every namespace gets from the control plane itself.
NAMESPACE_DEFAULTS = {"configmap/kube-root-ca.crt", "serviceaccount/default"}


def helm(kube: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_helm("--kubeconfig", str(kube.kubeconfig), *args, check=check)


def namespace(kube: Cluster, name: str, *labels: str) -> None:
    kube.kubectl("create", "namespace", name)
    if labels:
        kube.kubectl("label", "namespace", name, *labels)


@pytest.fixture(scope="module")
def kube(request: pytest.FixtureRequest) -> Cluster:
    """The local control plane, or the cluster named by $SIPFLEET_E2E_KUBECONFIG."""
    return chart_cluster(request)


@pytest.fixture(scope="module")
def installed(kube: Cluster) -> Iterator[subprocess.CompletedProcess[str]]:
    namespace(
        kube,
        NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    namespace(kube, EXAMPLE_NS)
    proc = helm(
        kube,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--wait",
        "--timeout=120s",
    )
    yield proc
    kube.kubectl("delete", "-n", EXAMPLE_NS, "-f", str(EXAMPLE), "--ignore-not-found", check=False)
    helm(kube, "uninstall", RELEASE, "--namespace", NAMESPACE, "--ignore-not-found", check=False)
    kube.kubectl("delete", "namespace", NAMESPACE, EXAMPLE_NS, "--wait=false", check=False)


def _operator_pods(kube: Cluster) -> Any:
    return get_json(kube, "pods", "-n", NAMESPACE, "-l", OPERATOR)["items"]


def _holder(kube: Cluster) -> str | None:
    lease = get_json(kube, "lease", LEASE, "-n", NAMESPACE)
    holder: str | None = lease["spec"].get("holderIdentity")
    return holder


def test_install_runs_two_ready_operators_with_one_leader(
    kube: Cluster, installed: subprocess.CompletedProcess[str]
) -> None:
    assert "kubectl apply -f examples/small-conference.yaml" in installed.stdout  # NOTES
    pods = _operator_pods(kube)
    names = {p["metadata"]["name"] for p in pods}
    assert len(names) == 2
    ready = [
        p
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
    ]
    assert len(ready) == 2
    assert wait_for("a leader in the Lease", lambda: _holder(kube)) in names


def test_example_conference_reconciles(kube: Cluster, installed: object) -> None:
    kube.kubectl("apply", "-n", EXAMPLE_NS, "-f", str(EXAMPLE))
    kube.kubectl(
        "wait",
        "-n",
        EXAMPLE_NS,
        "--for=condition=Ready",
        "sipconference/conf3",
        "--timeout=90s",
        timeout=100,
    )
    conf = get_json(kube, "sipconference", "conf3", "-n", EXAMPLE_NS)
    status = conf["status"]
    assert status["observedGeneration"] == conf["metadata"]["generation"]
    (shard,) = status["shards"]
    assert shard["server"] == "small-main"


def test_standby_takes_over_when_the_leader_goes(kube: Cluster, installed: object) -> None:
    leader = wait_for("a leader", lambda: _holder(kube))
    kube.kubectl("delete", "pod", "-n", NAMESPACE, leader, "--wait=false")
    new = wait_for(
        "another replica to take the Lease",
        lambda: h if (h := _holder(kube)) and h != leader else None,
        timeout=45,
    )
    assert new in {p["metadata"]["name"] for p in _operator_pods(kube)}


def test_upgrade_rolls_the_operators_and_keeps_a_leader(kube: Cluster, installed: object) -> None:
    """The chart owns the Lease with an empty spec; an upgrade must not reset its holder."""
    before = {p["metadata"]["name"] for p in _operator_pods(kube)}
    helm(
        kube,
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--reuse-values",
        "--set",
        "operator.leaseSeconds=20",
        "--wait",
        "--timeout=120s",
    )
    pods = wait_for(
        "the old operator Pods to go",
        lambda: p if len(p := _operator_pods(kube)) == 2 and not before & _names(p) else None,
    )
    wait_for("a new replica to lead", lambda: _holder(kube) in _names(pods) or None, timeout=45)
    kube.kubectl(
        "wait",
        "-n",
        EXAMPLE_NS,
        "--for=condition=Ready",
        "sipconference/conf3",
        "--timeout=60s",
        timeout=70,
    )


def _names(pods: Any) -> set[str]:
    return {p["metadata"]["name"] for p in pods}


def _leftovers(kube: Cluster) -> set[str]:
    """Objects of the release left anywhere, plus anything new in its namespace."""

    def names(*args: str) -> set[str]:
        return set(kube.kubectl("get", *args, "-o", "name", "--ignore-not-found").stdout.split())

    def kinds(namespaced: bool) -> str:
        out = kube.kubectl(
            "api-resources", "--verbs=list", f"--namespaced={str(namespaced).lower()}", "-o", "name"
        ).stdout.split()
        return ",".join(k for k in out if not k.startswith("events"))

    in_namespace = names(kinds(True), "-n", NAMESPACE) - NAMESPACE_DEFAULTS
    labelled = names(kinds(False), "-l", f"app.kubernetes.io/instance={RELEASE}")
    labelled |= names(kinds(True), "-A", "-l", f"app.kubernetes.io/instance={RELEASE}")
    return in_namespace | labelled


def test_uninstall_leaves_only_the_crds(kube: Cluster, installed: object) -> None:
    kube.kubectl("delete", "-n", EXAMPLE_NS, "-f", str(EXAMPLE), "--wait", "--timeout=60s")
    helm(kube, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=60s")
    wait_for("the release's objects to go", lambda: not _leftovers(kube) or None)
    for crd in ("sipfleets.sipfleet.io", "sipconferences.sipfleet.io"):
        kube.kubectl("get", "crd", crd)
