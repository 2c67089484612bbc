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
    retry_after: int = 30,
) -> Decision:
    """Join locally if there is room here, else redirect to the shard with most free room.

    `known_free` holds fresher free counts learned from rosters over the tree (by
    shard URI); the smaller of that and the operator's figure is used.
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
        return NoRoom(retry_after)
    return Redirect(best.uri)
