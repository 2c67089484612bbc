"""Routing table validation, generations, and the distribution tree derived from it."""

from __future__ import annotations

import pytest
from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.routes import (
    RoutesError,
    RoutingTable,
    StaleGeneration,
    children_indices,
    parent_index,
    parse_routes,
    tree_position,
)

G = "sip:conf3@example.com"


def entries(n: int) -> tuple[RouteEntry, ...]:
    return tuple(
        RouteEntry(f"s{i}", f"sip:conf3-s{i}@127.0.0.{10 + i}:5060", "active", 10) for i in range(n)
    )


def test_parse_valid_table() -> None:
    generation, groups = parse_routes(
        {
            "generation": 3,
            "groups": {
                G: [
                    {
                        "server": "main",
                        "uri": "sip:conf3-main@127.0.0.10:5060",
                        "state": "active",
                        "free": 5,
                    },
                    {"server": "n1", "uri": "sip:conf3-n1@127.0.0.11:5060", "state": "draining"},
                ]
            },
        }
    )
    assert generation == 3
    assert groups[G][0] == RouteEntry("main", "sip:conf3-main@127.0.0.10:5060", "active", 5)
    assert groups[G][1].state == "draining" and groups[G][1].free == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "body"),
        ({"generation": -1, "groups": {}}, "generation"),
        ({"generation": True, "groups": {}}, "generation"),
        ({"generation": 1, "groups": []}, "groups"),
        ({"generation": 1, "groups": {"conf3": [{"server": "a", "uri": "sip:a@b"}]}}, "sip:"),
        ({"generation": 1, "groups": {G: []}}, "at least 1 item"),
        ({"generation": 1, "groups": {G: [{"server": "", "uri": "sip:a@b"}]}}, "server"),
        ({"generation": 1, "groups": {G: [{"server": "a", "uri": "http://x"}]}}, "uri"),
        (
            {"generation": 1, "groups": {G: [{"server": "a", "uri": "sip:a@b", "state": "x"}]}},
            "state",
        ),
        (
            {"generation": 1, "groups": {G: [{"server": "a", "uri": "sip:a@b", "free": "1"}]}},
            "free",
        ),
        (
            {
                "generation": 1,
                "groups": {
                    G: [{"server": "a", "uri": "sip:a@b"}, {"server": "a", "uri": "sip:c@d"}]
                },
            },
            "twice",
        ),
    ],
)
def test_parse_rejects_bad_tables(payload: object, message: str) -> None:
    with pytest.raises(RoutesError, match=message):
        parse_routes(payload)


def test_generations_only_move_forward() -> None:
    table = RoutingTable()
    first = {G: entries(2)}
    assert table.replace(0, first) is True  # the initial push installs even at 0
    assert table.replace(0, {G: entries(3)}) is False  # equal: no-op
    assert table.entries(G) == entries(2)
    assert table.replace(5, {G: entries(3)}) is True
    with pytest.raises(StaleGeneration, match="older than the current 5"):
        table.replace(4, first)
    assert table.generation == 5 and len(table.entries(G)) == 3


def test_tree_indices_fanout_2() -> None:
    assert [parent_index(i, 2) for i in range(7)] == [None, 0, 0, 1, 1, 2, 2]
    assert list(children_indices(0, 7, 2)) == [1, 2]
    assert list(children_indices(2, 7, 2)) == [5, 6]
    assert list(children_indices(2, 6, 2)) == [5]
    assert list(children_indices(3, 7, 2)) == []


def test_every_server_reached_exactly_once_from_the_root() -> None:
    for size in range(1, 40):
        for fanout in (1, 2, 3, 8):
            seen: list[int] = []
            frontier = [0]
            while frontier:
                index = frontier.pop()
                seen.append(index)
                frontier.extend(children_indices(index, size, fanout))
            assert sorted(seen) == list(range(size))


def test_tree_position() -> None:
    es = entries(5)
    root = tree_position(es, "s0", 2)
    assert root is not None and root.parent is None and root.children == (es[1], es[2])
    leaf = tree_position(es, "s4", 2)
    assert leaf is not None
    assert (leaf.root, leaf.parent, leaf.children) == (es[0], es[1], ())
    assert tree_position(es, "elsewhere", 2) is None
