"""The values `ChartOperator` (the demo's and the e2e tests' operator install) gives
the chart render one standalone operator replica watching the release namespace,
started with the asked `sipfleet-operator` options."""

from __future__ import annotations

from pathlib import Path

import yaml
from chart_support import by_kind, manifests, render
from sipfleet.demo.kubeside import ChartOperator
from sipfleet.devcluster.cluster import Cluster


def test_values_render_one_replica_watching_its_namespace_with_the_extra_args(
    tmp_path: Path,
) -> None:
    cluster = Cluster(
        kubeconfig=tmp_path / "kubeconfig",
        state_dir=tmp_path,
        bin_dir=tmp_path,
        kubectl_path=tmp_path / "kubectl",
        helm_path=tmp_path / "helm",
    )
    chart = ChartOperator(
        cluster, "op-ha-alpha", "op-ha", tmp_path / "op.log", ("--identity", "alpha"), interval=1
    )
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart.values()))
    docs = manifests(render(values, release=chart.release, namespace=chart.namespace))
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == (
        "op-ha-alpha"
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for pair in chart.selector.split(","):
        key, value = pair.split("=")
        assert labels[key] == value
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--identity", "alpha"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SIPFLEET_OPERATOR_NAMESPACES"] == "op-ha"
    assert "SIPFLEET_OPERATOR_ALL_NAMESPACES" not in env
    assert "SIPFLEET_OPERATOR_PEERING" not in env  # standalone: no Lease to wait for
    assert not by_kind(docs, "Lease")
    assert env["SIPFLEET_OPERATOR_INTERVAL"] == "1"
    assert container["readinessProbe"]["periodSeconds"] == 1
    assert not by_kind(docs, "PodDisruptionBudget")  # one replica: no budget
