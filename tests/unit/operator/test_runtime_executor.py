"""Pure helpers of the executor: node indices and route entries."""

from __future__ import annotations

from sipfleet.operator.executor import free_indices, route_entries
from sipfleet.operator.planner import Route


def test_free_indices_fill_gaps_first() -> None:
    assert free_indices([], 2) == [1, 2]
    assert free_indices([1, 3, 4], 3) == [2, 5, 6]
    assert free_indices([2], 0) == []


def test_route_entries_keep_order_and_drop_servers_about_to_go() -> None:
    routes = (
        Route("f-main", "sip:c@m", "active", 3),
        Route("f-node-1", "sip:c-1@n", "draining", 0),
        Route("f-node-2", "sip:c-2@n", "active", 9),
    )
    out = route_entries(routes, exclude=["f-node-1"])
    assert [(e.server, e.state, e.free) for e in out] == [
        ("f-main", "active", 3),
        ("f-node-2", "active", 9),
    ]
