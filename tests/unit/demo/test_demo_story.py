"""The story's arithmetic: act lengths, ramps, when the fleet counts as scaled in."""

from __future__ import annotations

import pytest
from sipfleet.demo.members import Member
from sipfleet.demo.observe import ServerView, Snapshot
from sipfleet.demo.story import acts_for, ramp, scaled_in, spread_speakers
from sipfleet.node.sip import Dialog


def test_acts_add_up_to_the_duration() -> None:
    acts = acts_for(120)
    assert acts.total == pytest.approx(120)
    assert acts.join == pytest.approx(30)
    assert acts.settle == pytest.approx(48)


def test_too_short_a_duration_is_refused_with_the_minimum() -> None:
    with pytest.raises(ValueError, match="at least 45 seconds"):
        acts_for(20)


def test_ramp_spreads_steps_evenly_from_zero() -> None:
    assert ramp(4, 8.0) == [0.0, 2.0, 4.0, 6.0]
    assert ramp(0, 8.0) == []


def snapshot(*servers: tuple[str, str, int | None]) -> Snapshot:
    views = tuple(ServerView(name, role, "Ready", members) for name, role, members in servers)
    return Snapshot(0.0, views, "Running", 0, "", ())


def test_scaled_in_needs_no_nodes_and_no_members() -> None:
    assert scaled_in(snapshot(("demo-main", "main", 0)))
    assert not scaled_in(snapshot(("demo-main", "main", 0), ("demo-node-1", "node", 0)))
    assert not scaled_in(snapshot(("demo-main", "main", 2)))
    assert scaled_in(snapshot(("demo-main", "main", None)))


def joined(name: str, shard: str | None) -> Member:
    member = Member(name, f"sip:{name}@127.0.0.1", f"sip:{name}@127.0.0.1:5555")
    if shard is not None:
        member.dialog = Dialog("c-" + name, "a", "b", "<x>", "<y>", shard)
    return member


def test_speakers_come_from_different_servers_first() -> None:
    a1, a2, b1 = joined("a1", "sip:s-a@h"), joined("a2", "sip:s-a@h"), joined("b1", "sip:s-b@h")
    out = joined("out", None)
    assert spread_speakers([a1, a2, out, b1], 2) == [a1, b1]
    assert spread_speakers([a1, a2, out, b1], 3) == [a1, b1, a2]
    assert spread_speakers([out], 3) == []
