"""The distribution tree and rosters as pure logic, in virtual time."""

from __future__ import annotations

import json

from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.distribution import (
    ROSTER_DELAY,
    SEEN_IDS,
    Deliver,
    Distribution,
    Forward,
    RemoteShard,
    RosterChanged,
    RosterDue,
)
from sipfleet.node.s2s import Envelope

GROUP = "sip:conf@example.com"
ENTRIES = tuple(RouteEntry(f"s{i}", f"sip:conf-s{i}@10.0.0.{i}", "active", 5) for i in range(7))


def message(msg_id: str = "m1") -> Envelope:
    return Envelope("group", GROUP, msg_id, "s4", "sip:alice@x", "text/plain", b"hi")


def test_a_leaf_sends_up_and_the_root_sends_down_once() -> None:
    leaf, root = Distribution("s4", 2), Distribution("s0", 2)
    assert leaf.route_up(message(), ENTRIES) == [Forward(message(), ENTRIES[0], "up")]
    down = root.route_up(message(), ENTRIES)
    assert down == [
        Forward(message(), ENTRIES[1], "down"),
        Forward(message(), ENTRIES[2], "down"),
        Deliver(message()),
    ]
    assert root.distribute(message(), ENTRIES) == []  # exactly once per message id
    middle = Distribution("s1", 2)  # children of entry 1 with fanout 2: entries 3 and 4
    assert [a.entry.server for a in middle.distribute(message(), ENTRIES)[:2]] == ["s3", "s4"]  # type: ignore[union-attr]
    alone = Distribution("x", 2)  # not in the tree: delivers itself
    assert alone.route_up(message(), ENTRIES) == [Deliver(message())]


def test_seen_ids_are_bounded() -> None:
    root = Distribution("s0", 2)
    for i in range(SEEN_IDS + 1):
        root.distribute(message(f"m{i}"), ())
    assert root.distribute(message("m0"), ()) == [Deliver(message("m0"))]  # forgotten
    assert root.distribute(message(f"m{SEEN_IDS}"), ()) == []


def test_rosters_coalesce_travel_and_are_applied() -> None:
    here, there = Distribution("s0", 2), Distribution("s1", 2)
    here.schedule_roster(GROUP, 10.0)
    here.schedule_roster(GROUP, 10.01)  # coalesced
    assert here.tick(10.0 + ROSTER_DELAY - 0.001) == []
    assert here.tick(10.0 + ROSTER_DELAY) == [RosterDue(GROUP)]
    envelope = here.roster(GROUP, "sip:conf-s0@10.0.0.0", 3, ["sip:b@x", "sip:a@x"])
    assert json.loads(envelope.body)["members"] == ["sip:a@x", "sip:b@x"]
    assert here.distribute(envelope, ()) == []  # our own roster is not applied here
    remote = RemoteShard("s0", "sip:conf-s0@10.0.0.0", 3, frozenset({"sip:a@x", "sip:b@x"}))
    assert there.distribute(envelope, ()) == [RosterChanged(GROUP, remote)]
    assert there.remote_members(GROUP) == {"sip:a@x", "sip:b@x"}
    assert there.known_free(GROUP) == {"sip:conf-s0@10.0.0.0": 1}
    bad = Envelope("roster", GROUP, "bad", "s2", "", "application/json", b"{nope")
    assert there.distribute(bad, ()) == []  # logged and dropped
    here.schedule_roster(GROUP, 20.0)
    here.roster(GROUP, "sip:conf-s0@10.0.0.0", 3, [])  # sent at once: the due one is moot
    assert here.next_deadline() is None
