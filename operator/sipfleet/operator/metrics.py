"""The operator's own Prometheus metrics (``sipfleet_operator_*``).

They live in a private registry so importing this module in tests never
collides with the default registry, and ``serve`` exposes exactly these.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "sipfleet_operator_reconciles",
    "Control-loop passes, by resource kind.",
    ["kind"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "sipfleet_operator_decisions",
    "Decisions applied, by kind of step (scale_out, scale_in, transfer, drain, ...).",
    ["kind"],
    registry=REGISTRY,
)
DECISION_SECONDS = Histogram(
    "sipfleet_operator_decision_seconds",
    "Time to observe, plan and apply one control-loop pass.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
ERRORS = Counter(
    "sipfleet_operator_errors",
    "Failures while observing or applying, by stage.",
    ["stage"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "sipfleet_operator_leader",
    "1 while this replica acts (holds the Lease, or runs standalone), 0 while it stands by.",
    registry=REGISTRY,
)
FLEET_NODES = Gauge(
    "sipfleet_operator_fleet_nodes",
    "Node Pods of a fleet (main server not counted), from the SipFleet status.",
    ["namespace", "fleet"],
    registry=REGISTRY,
)
FLEET_READY_NODES = Gauge(
    "sipfleet_operator_fleet_ready_nodes",
    "Ready node Pods of a fleet, from the SipFleet status.",
    ["namespace", "fleet"],
    registry=REGISTRY,
)
FLEET_MAX_NODES = Gauge(
    "sipfleet_operator_fleet_max_nodes",
    "The fleet's spec.maxNodes.",
    ["namespace", "fleet"],
    registry=REGISTRY,
)
_FLEET_GAUGES = (FLEET_NODES, FLEET_READY_NODES, FLEET_MAX_NODES)


def set_fleet(namespace: str, fleet: str, *, nodes: int, ready: int, max_nodes: int) -> None:
    """Export one fleet's sizes (each pass of its reconcile timer)."""
    FLEET_NODES.labels(namespace, fleet).set(nodes)
    FLEET_READY_NODES.labels(namespace, fleet).set(ready)
    FLEET_MAX_NODES.labels(namespace, fleet).set(max_nodes)


def forget_fleet(namespace: str, fleet: str) -> None:
    """Drop a deleted fleet's series, so its last sizes do not linger in alerts."""
    for gauge in _FLEET_GAUGES:
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, fleet)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose the metrics on ``addr:port`` in a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
