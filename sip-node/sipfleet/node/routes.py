"""The routing table the operator pushes (PUT /v1/routes) and the tree derived from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sipfleet.node.admin_types import RouteEntry, Routes, describe


class RoutesError(ValueError):
    """The pushed table is malformed (HTTP 400)."""


class StaleGeneration(Exception):
    """A table older than the current one was pushed (HTTP 409)."""


Groups = dict[str, tuple[RouteEntry, ...]]


def parse_routes(payload: Any) -> tuple[int, Groups]:
    """Validate a PUT /v1/routes body (admin_types.Routes); raise RoutesError
    naming the bad field."""
    try:
        routes = Routes.model_validate(payload)
    except ValidationError as exc:
        raise RoutesError(describe(exc)) from None
    return routes.generation, dict(routes.groups)


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

    def snapshot(self) -> Routes:
        """The table as the admin API shows it."""
        return Routes.model_construct(generation=self.generation, groups=dict(self.groups))


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
