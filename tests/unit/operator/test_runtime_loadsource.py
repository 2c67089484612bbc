"""Parsing what Prometheus and the nodes' /metrics answer."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sipfleet.operator.loadsource import (
    LoadReading,
    LoadSourceError,
    members_query,
    parse_node_metrics,
    parse_prometheus_vector,
)

GROUP = "sip:conf3@example.com"


def vector(*samples: tuple[str, str]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"pod": p}, "value": [1700000000.0, v]} for p, v in samples],
        },
    }


def test_default_query_counts_only_fresh_samples_per_pod() -> None:
    q = members_query(GROUP, 30)
    assert q == (
        'sum by (pod) (last_over_time(sipfleet_node_members{group="sip:conf3@example.com"}[30s]))'
    )
    assert members_query(GROUP, 0.2).endswith("[1s]))")


def test_query_quotes_hostile_group_values() -> None:
    q = members_query('sip:a"b\\c@x', 10)
    assert '{group="sip:a\\"b\\\\c@x"}' in q


def test_query_template_replaces_group() -> None:
    q = members_query(GROUP, 10, 'max by (pod) (my_members{g="$group"})')
    assert q == 'sum by (pod) (max by (pod) (my_members{g="sip:conf3@example.com"}))'


def test_vector_parses_to_pod_counts() -> None:
    assert parse_prometheus_vector(vector(("a-main", "12"), ("a-node-1", "7.0"))) == {
        "a-main": 12,
        "a-node-1": 7,
    }
    assert parse_prometheus_vector(vector()) == {}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ([], "not a JSON object"),
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "parse error"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "instant vector"),
        (
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
            "'pod' label",
        ),
        (vector(("p", "NaN")), "not a count"),
        (vector(("p", "-1")), "not a count"),
        (vector(("p", "many")), "numeric value"),
    ],
)
def test_bad_prometheus_answers_raise_clear_errors(payload: object, needle: str) -> None:
    with pytest.raises(LoadSourceError, match=needle):
        parse_prometheus_vector(payload)


def node_metrics_text(values: dict[str, float]) -> str:
    """Exposition text as the node renders it (a real prometheus_client registry)."""
    registry = CollectorRegistry()
    gauge = Gauge("sipfleet_node_members", "Members", ["group"], registry=registry)
    for group, value in values.items():
        gauge.labels(group).set(value)
    return generate_latest(registry).decode()


def test_node_metrics_pick_the_group() -> None:
    text = node_metrics_text({GROUP: 17, "sip:other@example.com": 3})
    assert parse_node_metrics(text, GROUP) == 17
    assert parse_node_metrics(text, "sip:other@example.com") == 3
    assert parse_node_metrics(text, "sip:absent@example.com") is None
    assert parse_node_metrics(node_metrics_text({GROUP: 0}), GROUP) == 0


def test_unparseable_metrics_text_raises() -> None:
    with pytest.raises(LoadSourceError):
        parse_node_metrics('sipfleet_node_members{group="x" 1\n', "x")


def test_reading_completeness() -> None:
    ok = LoadReading("scrape", {"a": 1, "b": 2})
    assert ok.complete and ok.total == 3
    assert not LoadReading("scrape", {"a": 1}, frozenset({"b"})).complete
    assert not LoadReading("prometheus", error="down").complete
    assert math.isclose(LoadReading("x").total, 0)
