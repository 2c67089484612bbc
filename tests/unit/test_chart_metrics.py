"""The alerts' and the dashboard's PromQL parses, and queries only metrics the code exports."""

from __future__ import annotations

import json
import re

import pytest
from chart_support import ALL_OPTIONS, CHART, by_kind, manifests, render
from prometheus_client import CollectorRegistry, generate_latest
from sipfleet.node.metrics import NodeMetrics
from sipfleet.operator import metrics as operator_metrics

SUFFIXES = {
    "counter": ("",),  # the text format already names counters *_total
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def _series(registry: CollectorRegistry) -> set[str]:
    """Sample names a registry exposes, labelled or not, from its # TYPE lines."""
    names: set[str] = set()
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + s for s in SUFFIXES.get(kind, ("",))}
    return names


# Grafana replaces its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$fleet": ".*"}


def _expressions() -> list[str]:
    docs = manifests(render(ALL_OPTIONS))
    (rule,) = by_kind(docs, "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads((CHART / "dashboards" / "sipfleet.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            exprs.append(expr)
    return exprs


EXPRESSIONS = _expressions()


def _queried() -> set[str]:
    return {m for e in EXPRESSIONS for m in re.findall(r"\bsipfleet_[a-z_]+", e)}


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_promql_parses(expr: str) -> None:
    # Needs the test dependency promql-parser (the Rust PromQL parser's bindings).
    promql = pytest.importorskip("promql_parser")
    assert "$" not in expr, f"unreplaced Grafana variable in {expr}"
    promql.parse(expr)


EXPORTED = _series(NodeMetrics().registry) | _series(operator_metrics.REGISTRY)


@pytest.mark.parametrize("metric", sorted(_queried()))
def test_queried_metric_is_exported(metric: str) -> None:
    assert metric in EXPORTED, f"{metric} is queried by the chart but exported by nothing"
