"""The per-fleet gauges the chart's alerts query."""

from __future__ import annotations

from sipfleet.operator import metrics


def sample(name: str, namespace: str, fleet: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"namespace": namespace, "fleet": fleet})


def test_fleet_gauges_follow_the_last_status_and_go_with_the_fleet() -> None:
    metrics.set_fleet("ns", "f1", nodes=3, ready=2, max_nodes=4)
    metrics.set_fleet("ns", "f2", nodes=0, ready=0, max_nodes=1)
    metrics.set_fleet("ns", "f1", nodes=2, ready=2, max_nodes=4)
    assert sample("sipfleet_operator_fleet_nodes", "ns", "f1") == 2
    assert sample("sipfleet_operator_fleet_ready_nodes", "ns", "f1") == 2
    assert sample("sipfleet_operator_fleet_max_nodes", "ns", "f1") == 4
    metrics.forget_fleet("ns", "f1")
    metrics.forget_fleet("ns", "f1")  # twice: no error
    assert sample("sipfleet_operator_fleet_nodes", "ns", "f1") is None
    assert sample("sipfleet_operator_fleet_max_nodes", "ns", "f2") == 1
    metrics.forget_fleet("ns", "f2")
