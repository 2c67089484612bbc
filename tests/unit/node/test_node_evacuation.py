"""Graceful exit: how a stopping server splits its members over the pushed routes."""

from __future__ import annotations

from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.evacuation import assign

MAIN = RouteEntry("main", "sip:g-main@10.0.0.1:5060", "active", 4)
A = RouteEntry("a", "sip:g-a@10.0.0.2:5060", "active", 10)
ME = RouteEntry("b", "sip:g-b@10.0.0.3:5060", "draining", 0)
LEAVING = RouteEntry("c", "sip:g-c@10.0.0.4:5060", "draining", 0)


def test_members_go_to_the_roomiest_active_servers_first() -> None:
    assert assign(12, (MAIN, A, ME), "b", {}) == [(A.uri, 10), (MAIN.uri, 2)]


def test_never_more_than_the_room_left_and_never_to_draining_servers_or_itself() -> None:
    assert assign(30, (MAIN, A, ME, LEAVING), "b", {}) == [(A.uri, 10), (MAIN.uri, 4)]
    active_me = RouteEntry("b", ME.uri, "active", 50)  # a table pushed before SIGTERM
    assert assign(3, (active_me, MAIN), "b", {}) == [(MAIN.uri, 3)]


def test_members_already_sent_since_the_table_arrived_use_up_room() -> None:
    assert assign(12, (MAIN, A), "b", {A.uri: 9}) == [(MAIN.uri, 4), (A.uri, 1)]
    assert assign(5, (MAIN, A), "b", {A.uri: 10, MAIN.uri: 4}) == []  # wait for room


def test_nothing_to_assign_or_nowhere_to_go() -> None:
    assert assign(0, (MAIN, A), "b", {}) == []
    assert assign(5, (ME,), "b", {}) == []
