"""Routing tables per server and generation numbering."""

from __future__ import annotations

from sipfleet.node.admin_types import ROUTE_ENTRY, RouteEntry
from sipfleet.operator.routing import FleetRoutes, next_generation, tables_by_server

A = "sip:a@example.com"
B = "sip:b@example.com"


def entries(*servers: str) -> list[RouteEntry]:
    return [RouteEntry(s, f"sip:x@{s}", "active", 3) for s in servers]


def test_generation_follows_the_clock_in_milliseconds() -> None:
    assert next_generation(1700000000.1234, [5, 7]) == 1700000000123


def test_generation_never_goes_back_behind_what_servers_report() -> None:
    late_clock = 1000.0
    assert next_generation(late_clock, [2_000_000, 5]) == 2_000_001
    assert next_generation(late_clock, [], last=3_000_000) == 3_000_001


def test_generation_strictly_increases_within_one_millisecond() -> None:
    g1 = next_generation(50.0, [])
    g2 = next_generation(50.0, [], last=g1)
    assert g2 == g1 + 1


def test_each_server_gets_every_group_it_hosts() -> None:
    tables = tables_by_server({A: tuple(entries("main", "n1")), B: tuple(entries("main", "n2"))})
    assert set(tables) == {"main", "n1", "n2"}
    assert set(tables["main"]) == {A, B}
    assert set(tables["n1"]) == {A}
    assert [e.server for e in tables["n2"][B]] == ["main", "n2"]


def test_first_pass_pushes_to_hosting_servers_only() -> None:
    fr = FleetRoutes()
    fr.set_group(A, entries("main", "n1"))
    stale = fr.stale_servers({"main": 0, "n1": 0, "idle": 0})
    assert set(stale) == {"main", "n1"}


def test_unchanged_tables_are_not_pushed_again() -> None:
    fr = FleetRoutes()
    fr.set_group(A, entries("main", "n1"))
    for server, table in fr.stale_servers({"main": 0, "n1": 0}).items():
        fr.mark_pushed(server, 10, table)
    assert fr.stale_servers({"main": 10, "n1": 10}) == {}


def test_a_restarted_server_gets_its_table_again() -> None:
    fr = FleetRoutes()
    fr.set_group(A, entries("main", "n1"))
    for server, table in fr.stale_servers({"main": 0, "n1": 0}).items():
        fr.mark_pushed(server, 10, table)
    assert set(fr.stale_servers({"main": 10, "n1": 0})) == {"n1"}


def test_a_change_in_one_group_reaches_main_with_both_groups() -> None:
    fr = FleetRoutes()
    fr.set_group(A, entries("main", "n1"))
    fr.set_group(B, entries("main", "n2"))
    for server, table in fr.stale_servers({"main": 0, "n1": 0, "n2": 0}).items():
        fr.mark_pushed(server, 10, table)
    fr.set_group(A, entries("main", "n1", "n3"))
    stale = fr.stale_servers({"main": 10, "n1": 10, "n2": 10, "n3": 0})
    assert set(stale) == {"main", "n1", "n3"}
    assert set(stale["main"]) == {A, B}


def test_dropping_a_group_empties_tables_only_where_we_pushed() -> None:
    fr = FleetRoutes()
    fr.set_group(A, entries("main", "n1"))
    for server, table in fr.stale_servers({"main": 0, "n1": 0}).items():
        fr.mark_pushed(server, 10, table)
    fr.drop_group(A)
    assert fr.stale_servers({"main": 10, "n1": 10, "never": 0}) == {"main": {}, "n1": {}}


def test_a_generation_read_before_our_push_is_not_a_restart() -> None:
    """A shared fleet view may predate the push; only a later view proves a lost table."""
    fr = FleetRoutes()
    fr.set_group(A, entries("main", "n1"))
    for server, table in fr.stale_servers({"main": 0, "n1": 0}).items():
        fr.mark_pushed(server, 10, table, at=50.0)
    assert fr.stale_servers({"main": 4, "n1": 4}, taken=49.0) == {}
    assert set(fr.stale_servers({"main": 10, "n1": 4}, taken=51.0)) == {"n1"}


def test_a_repeated_or_other_servers_change_is_not_pushed() -> None:
    fr = FleetRoutes()
    fr.set_group(A, entries("main", "n1"))
    fr.set_group(B, entries("main"))
    for server, table in fr.stale_servers({"main": 0, "n1": 0}).items():
        fr.mark_pushed(server, 10, table)
    version = fr.version
    fr.set_group(A, entries("main", "n1"))  # the same entries: no new version
    assert fr.version == version
    fr.set_group(B, entries("main", "n9"))  # n1's table is unchanged
    assert set(fr.stale_servers({"main": 10, "n1": 10, "n9": 0})) == {"main", "n9"}


def test_a_table_composed_before_a_concurrent_change_stays_stale() -> None:
    fr = FleetRoutes()
    fr.set_group(A, entries("main"))
    version = fr.version
    stale = fr.stale_servers({"main": 0})
    fr.set_group(B, entries("main"))  # arrives while the push is in flight
    fr.mark_pushed("main", 10, stale["main"], version=version)
    assert set(fr.stale_servers({"main": 10})["main"]) == {A, B}


def test_seed_never_overrides_known_entries() -> None:
    fr = FleetRoutes()
    fr.set_group(A, entries("main", "n1"))
    fr.seed(A, entries("main"))
    fr.seed(B, entries("main", "n9"))
    assert [e.server for e in fr.groups[A]] == ["main", "n1"]
    assert [e.server for e in fr.groups[B]] == ["main", "n9"]


def test_entry_json_round_trip() -> None:
    e = RouteEntry("n1", "sip:c-1@127.0.0.11:5060", "draining", 0)
    assert ROUTE_ENTRY.validate_python(e.to_json()) == e
