"""Join-or-redirect decision (flow 1), counting redirects still in flight.

A burst of joins must not all be sent to the shard that looked emptiest when the
routes were pushed: every 302 reserves a seat on its target until the member
shows up in that server's roster or the reservation expires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sipfleet.node.admin_types import RouteEntry

RESERVATION_SECONDS = 5.0
FULL_RETRY_AFTER = 30
"""Seconds a join refused because the group is full everywhere waits (480)."""
STOPPING_RETRY_AFTER = 5
"""Seconds a join refused by a stopping server waits (503): about the time the
operator needs to start a replacement and route joins to it."""


@dataclass
class Reservations:
    ttl: float = RESERVATION_SECONDS
    _by_uri: dict[str, dict[str, float]] = field(default_factory=dict)

    def reserve(self, uri: str, member: str, now: float) -> None:
        self._by_uri.setdefault(uri, {})[member] = now + self.ttl

    def release(self, member: str) -> None:
        for seats in self._by_uri.values():
            seats.pop(member, None)

    def release_present(self, uri: str, members: set[str]) -> None:
        """Drop the reservations on `uri` for members its server now reports."""
        seats = self._by_uri.get(uri)
        if seats:
            for member in members & seats.keys():
                del seats[member]

    def count(self, uri: str, now: float) -> int:
        seats = self._by_uri.get(uri)
        if not seats:
            return 0
        for member in [m for m, expiry in seats.items() if expiry <= now]:
            del seats[member]
        return len(seats)


@dataclass(frozen=True, slots=True)
class Join:
    pass


@dataclass(frozen=True, slots=True)
class Redirect:
    uri: str


@dataclass(frozen=True, slots=True)
class NoRoom:
    """Refuse the join: `status` with `reason` and Retry-After `retry_after` seconds.

    480 Temporarily Unavailable (RFC 3261 21.4.18) while this server serves the
    group and the group is full everywhere; 503 Service Unavailable (21.5.4)
    while this server is stopping (draining) and no other server has room: the
    server, not the group, is unavailable, and a client may try another server
    (RFC 3263 4.3) or this one again after Retry-After (20.33).
    """

    status: int
    reason: str
    retry_after: int


Decision = Join | Redirect | NoRoom


def decide(
    *,
    local_room: bool,
    entries: Sequence[RouteEntry],
    self_name: str,
    reservations: Reservations,
    known_free: Mapping[str, int],
    now: float,
    stopping: bool = False,
) -> Decision:
    """Join locally if there is room here, else redirect to the shard with most free room,
    else refuse (`NoRoom`: 503 when `stopping`, this server draining, else 480).

    `known_free` holds fresher free counts learned from rosters over the tree (by
    shard URI); the smaller of that and the operator's figure is used. `now` is in
    seconds on the reservations' clock.
    """
    if local_room:
        return Join()
    best: RouteEntry | None = None
    best_free = 0
    for entry in entries:
        if entry.server == self_name or entry.state != "active":
            continue
        free = min(entry.free, known_free.get(entry.uri, entry.free))
        free -= reservations.count(entry.uri, now)
        if free > best_free:
            best, best_free = entry, free
    if best is None:
        if stopping:
            return NoRoom(503, "Server Stopping", STOPPING_RETRY_AFTER)
        return NoRoom(480, "Group Full", FULL_RETRY_AFTER)
    return Redirect(best.uri)
