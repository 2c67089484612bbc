"""Join-or-redirect decisions with redirects still in flight."""

from __future__ import annotations

from collections import Counter

from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.redirect import Join, NoRoom, Redirect, Reservations, decide

MAIN = RouteEntry("main", "sip:c-main@h:1", "active", 0)
A = RouteEntry("a", "sip:c-a@h:2", "active", 4)
B = RouteEntry("b", "sip:c-b@h:3", "active", 2)
DRAINING = RouteEntry("d", "sip:c-d@h:4", "draining", 100)
FULL = NoRoom(480, "Group Full", 30)


def choose(
    reservations: Reservations,
    member: str,
    now: float = 0.0,
    known: dict[str, int] | None = None,
    local_room: bool = False,
    entries: tuple[RouteEntry, ...] = (MAIN, A, B, DRAINING),
    stopping: bool = False,
) -> object:
    decision = decide(
        local_room=local_room,
        entries=entries,
        self_name="main",
        reservations=reservations,
        known_free=known or {},
        now=now,
        stopping=stopping,
    )
    if isinstance(decision, Redirect):
        reservations.reserve(decision.uri, member, now)
    return decision


def test_local_room_wins() -> None:
    assert isinstance(choose(Reservations(), "m"), Redirect)
    assert choose(Reservations(), "m", local_room=True) == Join()


def test_burst_spreads_by_free_room_counting_reservations() -> None:
    reservations = Reservations()
    picks = Counter()
    for i in range(6):
        decision = choose(reservations, f"m{i}")
        assert isinstance(decision, Redirect)
        picks[decision.uri] += 1
    # a has 4 free, b 2: exactly that many each, never the draining one.
    assert picks == {A.uri: 4, B.uri: 2}
    assert choose(reservations, "m7") == FULL


def test_reservations_expire() -> None:
    reservations = Reservations(ttl=5.0)
    for i in range(6):
        choose(reservations, f"m{i}", now=0.0)
    assert choose(reservations, "late", now=1.0) == FULL
    assert isinstance(choose(reservations, "later", now=6.0), Redirect)


def test_member_showing_up_releases_its_seat() -> None:
    reservations = Reservations()
    for i in range(4):
        assert choose(reservations, f"m{i}", entries=(MAIN, A)) == Redirect(A.uri)
    assert choose(reservations, "x", entries=(MAIN, A)) == FULL
    # a's roster now lists m0 and m1, and says it has 2 free seats left.
    reservations.release_present(A.uri, {"m0", "m1"})
    assert reservations.count(A.uri, 0.0) == 2
    assert choose(reservations, "y", entries=(MAIN, A), known={A.uri: 2}) == FULL
    assert choose(reservations, "z", entries=(MAIN, A), known={A.uri: 3}) == Redirect(A.uri)


def test_fresher_roster_figure_lowers_free_room() -> None:
    assert choose(Reservations(), "m", known={A.uri: 0}) == Redirect(B.uri)


def test_a_stopping_server_redirects_while_another_has_room_else_503() -> None:
    """RFC 3261 21.5.4: the server, not the group, is unavailable; Retry-After (20.33)
    is about the time a replacement needs, shorter than a full group's."""
    assert choose(Reservations(), "m", stopping=True) == Redirect(A.uri)
    refused = choose(Reservations(), "m", entries=(MAIN, DRAINING), stopping=True)
    assert refused == NoRoom(503, "Server Stopping", 5)
    assert choose(Reservations(), "m", entries=(MAIN, DRAINING)) == FULL
