"""Routing tables for PUT /v1/routes: one whole table per server, with generations.

A node replaces its whole table on every PUT, so a server's table must hold
*every* group it hosts, whichever SipConference the group belongs to. The
operator therefore keeps, per fleet, the latest entries of each group and
composes each server's table from them (see ``FleetRoutes``).

Generations must only grow, across restarts and leader changes too. They are
derived from wall-clock milliseconds and never fall below one more than the
highest generation any server reports, so a new leader with a slightly late
clock still moves forward.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sipfleet.node.admin_types import RouteEntry

GroupRoutes = tuple[RouteEntry, ...]
Table = dict[str, GroupRoutes]
"""One server's whole table: group -> its entries (PUT /v1/routes, admin_types.Routes)."""


def next_generation(now: float, observed: Iterable[int], last: int = 0) -> int:
    """A generation above every one seen: ``max(now in ms, highest seen + 1)``."""
    return max(int(now * 1000), max([last, *observed]) + 1)


def tables_by_server(groups: Mapping[str, GroupRoutes]) -> dict[str, Table]:
    """Each server's whole table: every group whose list names that server."""
    tables: dict[str, Table] = {}
    for group in sorted(groups):
        entries = groups[group]
        for entry in entries:
            tables.setdefault(entry.server, {})[group] = entries
    return tables


@dataclass
class Pushed:
    """What a server last accepted from us."""

    generation: int
    table: Table
    version: int
    """``FleetRoutes.version`` the table was composed from."""
    at: float
    """time.monotonic() when the server accepted it."""


@dataclass
class FleetRoutes:
    """The latest route entries of every group of one fleet, and what was pushed.

    ``version`` grows with every real change of ``groups``, so a pass whose
    group did not change finds in O(servers) that nothing needs a push, and
    the per-server tables are composed once per version, not once per pass.
    ``pushed`` remembers per server the table and generation last accepted,
    so only servers whose table changed, or who lost it (a restarted server
    reports a lower generation than we pushed), get a push.
    """

    groups: dict[str, GroupRoutes] = field(default_factory=dict)
    pushed: dict[str, Pushed] = field(default_factory=dict)
    seeded: set[str] = field(default_factory=set)
    """Servers whose own table was read back after a restart."""
    generation: int = 0
    """The last generation pushed to any server of the fleet."""
    version: int = 0
    _tables: tuple[int, dict[str, Table]] | None = None

    def set_group(self, group: str, entries: Sequence[RouteEntry]) -> None:
        new = tuple(entries)
        if not new:
            self.drop_group(group)
        elif self.groups.get(group) != new:
            self.groups[group] = new
            self.version += 1

    def seed(self, group: str, entries: Sequence[RouteEntry]) -> None:
        """Take a group's entries read back from a server unless a fresher copy is known."""
        if group not in self.groups and entries:
            self.set_group(group, entries)

    def drop_group(self, group: str) -> None:
        if self.groups.pop(group, None) is not None:
            self.version += 1

    def tables(self) -> dict[str, Table]:
        """Each server's whole table for the current version (cached)."""
        if self._tables is None or self._tables[0] != self.version:
            self._tables = (self.version, tables_by_server(self.groups))
        return self._tables[1]

    def stale_servers(
        self, reported: Mapping[str, int], taken: float = math.inf
    ) -> dict[str, Table]:
        """Servers (among ``reported`` name -> routes_generation) needing a push.

        ``taken`` is when ``reported`` was observed: a generation read before
        our last push was accepted is not a sign of a restart. A server
        hosting none of our groups any more gets an empty table only if we
        had pushed it one before.
        """
        out: dict[str, Table] = {}
        for server, generation in reported.items():
            last = self.pushed.get(server)
            lost = last is not None and generation < last.generation and taken >= last.at
            if last is not None and last.version == self.version and not lost:
                continue
            table = self.tables().get(server, {})
            if last is None:
                if table:
                    out[server] = table
            elif lost or last.table != table:
                out[server] = table
            else:
                last.version = self.version  # its table did not change
        return out

    def mark_pushed(
        self,
        server: str,
        generation: int,
        table: Table,
        *,
        version: int | None = None,
        at: float = 0.0,
    ) -> None:
        """Record an accepted push of ``table`` (composed at ``version``, default current)."""
        self.pushed[server] = Pushed(
            generation, table, self.version if version is None else version, at
        )
