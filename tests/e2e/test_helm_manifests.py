"""Every manifest the chart renders is accepted by the real API server and by kubeconform.

Rendered with default values and with every option on (ci/all-options-values.yaml).
The Prometheus Operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule) come
from the prometheus-operator Go module, so those objects are checked for real
too. kubeconform validates offline against strict JSON schemas generated from
this API server's OpenAPI (there is no network for its default schema
registry); the server's dry run is the independent second opinion.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from chart_support import (
    ALL_OPTIONS,
    CHART,
    apply_crds,
    chart_cluster,
    manifests,
    prometheus_operator_crds,
    render,
    tool,
    write_kubeconform_schemas,
)
from sipfleet.devcluster.cluster import Cluster

NAMESPACE = "helm-dryrun"
# All-options values put server NetworkPolicies in these namespaces too.
EXTRA_NAMESPACES = ("sip",)
VALUES = {"default": (), "all-options": (ALL_OPTIONS,)}


@pytest.fixture(scope="module")
def kube(request: pytest.FixtureRequest) -> Cluster:
    """The local control plane, or the cluster named by $SIPFLEET_E2E_KUBECONFIG."""
    return chart_cluster(request)


@pytest.fixture(scope="module")
def prepared(kube: Cluster) -> Cluster:
    """The CRDs the manifests need, and their namespaces (restricted Pod Security)."""
    apply_crds(
        kube.kubectl, [*sorted((CHART / "crds").glob("*.yaml")), *prometheus_operator_crds()]
    )
    for ns in (NAMESPACE, *EXTRA_NAMESPACES):
        namespace = f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
"""
        kube.kubectl("apply", "-f", "-", input=namespace)
    return kube


def _render(values: str) -> str:
    return render(*VALUES[values], namespace=NAMESPACE)


@pytest.mark.parametrize("values", VALUES)
def test_api_server_accepts_every_manifest(prepared: Cluster, values: str) -> None:
    stream = _render(values)
    proc = prepared.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",
        "--field-manager=sipfleet-chart-tests",
        "--validate=strict",
        "-f",
        "-",
        input=stream,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # The namespace warns on anything short of the restricted Pod Security Standard.
    assert "PodSecurity" not in proc.stderr, proc.stderr
    accepted = [line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(manifests(stream)), proc.stdout


@pytest.mark.parametrize("values", VALUES)
def test_kubeconform_accepts_every_manifest(prepared: Cluster, values: str, tmp_path: Path) -> None:
    stream = _render(values)

    def get_raw(path: str) -> str:
        return prepared.kubectl("get", "--raw", path, timeout=60).stdout

    location = write_kubeconform_schemas(get_raw, manifests(stream), tmp_path)
    proc = subprocess.run(
        [str(tool("kubeconform")), "-strict", "-summary", "-schema-location", location],
        input=stream,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Valid: {len(manifests(stream))}, Invalid: 0, Errors: 0, Skipped: 0" in proc.stdout
