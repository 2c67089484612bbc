"""The routing table the operator pushes (PUT /v1/routes) and the tree derived from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

RouteState = Literal["active", "draining"]


class RoutesError(ValueError):
    """The pushed table is malformed (HTTP 400)."""


class StaleGeneration(Exception):
    """A table older than the current one was pushed (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class RouteEntry:
    server: str
    uri: str
    state: RouteState
    free: int

    def to_json(self) -> dict[str, Any]:
        return {"server": self.server, "uri": self.uri, "state": self.state, "free": self.free}


Groups = dict[str, tuple[RouteEntry, ...]]


def parse_routes(payload: Any) -> tuple[int, Groups]:
    """Validate a PUT /v1/routes body; raise RoutesError naming the bad field."""
    if not isinstance(payload, Mapping):
        raise RoutesError("body must be an object {generation, groups}")
    generation = payload.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise RoutesError("generation must be a non-negative integer")
    raw_groups = payload.get("groups")
    if not isinstance(raw_groups, Mapping):
        raise RoutesError("groups must be an object mapping group URI to a list of entries")
    groups: Groups = {}
    for group, entries in raw_groups.items():
        if not isinstance(group, str) or not group.startswith("sip:"):
            raise RoutesError(f"group key {group!r} must be a sip: URI")
        if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
            raise RoutesError(f"groups[{group!r}] must be a non-empty list of entries")
        groups[group] = tuple(_parse_entry(group, i, e) for i, e in enumerate(entries))
        names = [e.server for e in groups[group]]
        if len(set(names)) != len(names):
            raise RoutesError(f"groups[{group!r}] lists a server twice")
    return generation, groups


def _parse_entry(group: str, index: int, raw: Any) -> RouteEntry:
    where = f"groups[{group!r}][{index}]"
    if not isinstance(raw, Mapping):
        raise RoutesError(f"{where} must be an object")
    server, uri, state = raw.get("server"), raw.get("uri"), raw.get("state", "active")
    free = raw.get("free", 0)
    if not isinstance(server, str) or not server:
        raise RoutesError(f"{where}.server must be a non-empty string")
    if not isinstance(uri, str) or not uri.startswith("sip:"):
        raise RoutesError(f"{where}.uri must be a sip: URI")
    if state not in ("active", "draining"):
        raise RoutesError(f"{where}.state must be 'active' or 'draining'")
    if not isinstance(free, int) or isinstance(free, bool):
        raise RoutesError(f"{where}.free must be an integer")
    return RouteEntry(server, uri, state, max(free, 0))


class RoutingTable:
    """The whole table, replaced atomically; generations only move forward."""

    def __init__(self) -> None:
        self.generation = 0
        self.groups: Groups = {}

    def replace(self, generation: int, groups: Groups) -> bool:
        """Install a table; False for an equal generation (no-op); StaleGeneration if lower."""
        if generation < self.generation:
            raise StaleGeneration(
                f"generation {generation} is older than the current {self.generation}"
            )
        if generation == self.generation and self.groups:
            return False
        self.generation, self.groups = generation, groups
        return True

    def entries(self, group: str) -> tuple[RouteEntry, ...]:
        return self.groups.get(group, ())

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "groups": {g: [e.to_json() for e in es] for g, es in self.groups.items()},
        }


@dataclass(frozen=True, slots=True)
class TreePosition:
    """Where one server sits in a group's distribution tree."""

    root: RouteEntry
    parent: RouteEntry | None
    children: tuple[RouteEntry, ...]


def parent_index(index: int, fanout: int) -> int | None:
    return None if index == 0 else (index - 1) // fanout


def children_indices(index: int, size: int, fanout: int) -> range:
    first = fanout * index + 1
    return range(min(first, size), min(first + fanout, size))


def tree_position(entries: Sequence[RouteEntry], server: str, fanout: int) -> TreePosition | None:
    """The position of `server` in the tree over `entries` (entry 0 is the root)."""
    for index, entry in enumerate(entries):
        if entry.server == server:
            parent = parent_index(index, fanout)
            return TreePosition(
                root=entries[0],
                parent=None if parent is None else entries[parent],
                children=tuple(entries[i] for i in children_indices(index, len(entries), fanout)),
            )
    return None
