"""The distribution tree and the rosters that travel it: pure logic.

Flow of a group MESSAGE: the server a member is on hands it to the group's
root (entry 0 of the routes), which sends it down the tree; every server
forwards to its children and delivers to its own members. Message ids make
forwarding loop-free and exactly-once per server (the last SEEN_IDS are kept).
Roster updates (who is on which server, with how much room) travel the same
way, so every server knows the whole group.

Sans-I/O, like sip/transaction.py: calls take the group's route entries (and
`now` for timers) and return actions; the shell forwards, delivers and builds
its own roster when told (`RosterDue`), and calls `tick(now)` at
`next_deadline()`.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.routes import tree_position
from sipfleet.node.s2s import Envelope
from sipfleet.node.schedule import Schedule
from sipfleet.node.sip.ids import new_tag

log = logging.getLogger(__name__)

ROSTER_DELAY = 0.05  # seconds roster changes are coalesced before one update goes out
SEEN_IDS = 100_000  # message ids remembered for exactly-once delivery
Direction = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class RemoteShard:
    """What a peer server last reported about its shard of a group."""

    server: str
    uri: str
    capacity: int
    members: frozenset[str]


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the envelope to the server of `entry`, `up` to the root or `down` the tree."""

    envelope: Envelope
    entry: RouteEntry
    direction: Direction


@dataclass(frozen=True, slots=True)
class Deliver:
    """Deliver the group message to this server's members."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class RosterChanged:
    """A peer server reported its shard of the group."""

    group: str
    remote: RemoteShard


@dataclass(frozen=True, slots=True)
class RosterDue:
    """Report this server's shard of the group (`Distribution.roster`, then `route_up`)."""

    group: str


TreeAction = Forward | Deliver | RosterChanged | RosterDue


class Distribution:
    """This server (`name`) in every group's tree of `fanout` children per server."""

    def __init__(self, name: str, fanout: int) -> None:
        self.name, self.fanout = name, fanout
        self.remote: dict[str, dict[str, RemoteShard]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._roster_seq = 0
        self._due: Schedule[str] = Schedule()

    # ---- the tree ----------------------------------------------------------------------
    def route_up(self, envelope: Envelope, entries: Sequence[RouteEntry]) -> list[TreeAction]:
        """An envelope that starts here or came up from a child: to the root, or
        down the tree from here if this server is the root (or not in the tree)."""
        position = tree_position(entries, self.name, self.fanout)
        if position is not None and position.root.server != self.name:
            return [Forward(envelope, position.root, "up")]
        return self.distribute(envelope, entries)

    def distribute(self, envelope: Envelope, entries: Sequence[RouteEntry]) -> list[TreeAction]:
        """An envelope coming down: once per message id, to this server's children
        and then here (a group message to the members, a roster to the records)."""
        if envelope.msg_id in self._seen:
            return []
        self._seen[envelope.msg_id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        position = tree_position(entries, self.name, self.fanout)
        children = () if position is None else position.children
        out: list[TreeAction] = [Forward(envelope, child, "down") for child in children]
        if envelope.kind == "group":
            out.append(Deliver(envelope))
        else:
            out += self._apply_roster(envelope)
        return out

    # ---- rosters -----------------------------------------------------------------------
    def schedule_roster(self, group: str, now: float) -> None:
        """Our shard of the group changed: report it after ROSTER_DELAY (coalescing)."""
        if not self._due.armed(group):
            self._due.arm(group, now + ROSTER_DELAY)

    def next_deadline(self) -> float | None:
        return self._due.next_deadline()

    def tick(self, now: float) -> list[TreeAction]:
        return [RosterDue(group) for group in self._due.due(now)]

    def roster(self, group: str, uri: str, capacity: int, members: Sequence[str]) -> Envelope:
        """The roster update for our shard `uri` of the group: `capacity` free places
        announced (0 while draining or gone) and the member AORs. Cancels a pending
        `RosterDue` for the group (this one supersedes it)."""
        self._due.cancel(group)
        body = json.dumps(
            {"server": self.name, "uri": uri, "capacity": capacity, "members": sorted(members)}
        ).encode()
        self._roster_seq += 1
        msg_id = f"{self.name}.{self._roster_seq}.{new_tag()}"
        return Envelope("roster", group, msg_id, self.name, "", "application/json", body)

    def _apply_roster(self, envelope: Envelope) -> list[TreeAction]:
        if envelope.origin == self.name:
            return []
        try:
            data = json.loads(envelope.body)
            remote = RemoteShard(
                str(data["server"]),
                str(data["uri"]),
                int(data["capacity"]),
                frozenset(str(m) for m in data["members"]),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("bad roster from %s", envelope.origin)
            return []
        self.remote.setdefault(envelope.group, {})[remote.server] = remote
        return [RosterChanged(envelope.group, remote)]

    # ---- what the rosters say ----------------------------------------------------------
    def remote_members(self, group: str) -> frozenset[str]:
        """The group's members on other servers."""
        out: set[str] = set()
        for remote in self.remote.get(group, {}).values():
            out |= remote.members
        return frozenset(out)

    def known_free(self, group: str) -> dict[str, int]:
        """Free places per shard URI on other servers, as last reported."""
        return {
            r.uri: max(0, r.capacity - len(r.members)) for r in self.remote.get(group, {}).values()
        }
