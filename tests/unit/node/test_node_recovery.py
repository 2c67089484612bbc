"""The holder side in virtual time: storing replicas, noticing a restart or silence."""

from __future__ import annotations

import pytest
from sipfleet.node import recovery
from sipfleet.node.recovery import (
    DEAD_AFTER,
    HISTORY,
    HISTORY_SECONDS,
    DeclaredDead,
    History,
    ReplicaFull,
    Replicas,
    rejoin_method,
)
from sipfleet.node.replicas import Batch, DialogRecord
from test_node_replicas import GROUP, MAIN, record


def batch(
    *records: DialogRecord,
    origin: str = "node1",
    instance: str = "a",
    reset: bool = False,
    remove: tuple[tuple[str, str], ...] = (),
    group: str = GROUP,
) -> Batch:
    return Batch(origin, instance, group, MAIN, reset, records, remove)


def test_batches_build_the_origins_state() -> None:
    store = Replicas()
    assert store.on_batch(batch(record(1), record(2), reset=True), 0.0) == []
    store.on_batch(batch(record(3), remove=(record(1).key,)), 0.5)
    assert store.held() == {"node1": 2} and store.total == 2
    store.on_batch(batch(record(4), reset=True), 1.0)  # a reset replaces
    assert store.total == 1


def test_a_restarted_origin_orphans_its_old_instance() -> None:
    store = Replicas()
    store.on_batch(batch(record(1), record(2), reset=True), 0.0)
    (orphans,) = store.on_batch(batch(reset=True, instance="b"), 1.0)
    assert orphans.reason == "restarted" and orphans.instance == "a"
    assert {r.key for r in orphans.records} == {record(1).key, record(2).key}
    assert store.total == 0 and store.held() == {}
    with pytest.raises(DeclaredDead):  # a false alarm is told so
        store.on_batch(batch(instance="a"), 1.1)


def test_a_silent_origin_is_dead_after_its_deadline() -> None:
    store = Replicas()
    store.on_batch(batch(record(1), reset=True), 0.0)
    store.on_batch(batch(origin="node2", reset=False), 0.0)  # no records: nothing to lose
    store.on_batch(batch(), 1.0)  # heartbeat
    assert store.next_deadline() == pytest.approx(DEAD_AFTER)
    assert store.tick(DEAD_AFTER) == []  # node2 had nobody
    assert store.tick(1.0 + DEAD_AFTER - 0.01) == []
    (orphans,) = store.tick(1.0 + DEAD_AFTER)
    assert orphans.reason == "silent" and orphans.records == (record(1),)
    assert orphans.last_seen == 1.0  # messages since then may not have reached them
    assert store.next_deadline() is None
    store.on_batch(batch(origin="node2", instance="a"), 9.0)  # no records: never "dead"


def test_a_release_stops_the_watch() -> None:
    store = Replicas()
    store.on_batch(batch(record(1), reset=True), 0.0)
    store.on_batch(batch(reset=True), 0.5)
    assert store.held() == {} and store.tick(100.0) == []


def test_groups_are_kept_apart() -> None:
    other = "sip:other@example.com"
    store = Replicas()
    store.on_batch(batch(record(1), reset=True), 0.0)
    store.on_batch(batch(record(2, group=other), reset=True, group=other), 0.0)
    store.on_batch(batch(reset=True), 0.5)  # released one group only
    assert store.held() == {"node1": 1}


def test_the_store_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "MAX_RECORDS", 3)
    store = Replicas()
    store.on_batch(batch(record(1), record(2), reset=True), 0.0)
    with pytest.raises(ReplicaFull):
        store.on_batch(batch(record(3), record(4)), 0.1)
    assert store.total == 2  # nothing applied
    store.on_batch(batch(record(3), remove=(record(1).key,)), 0.2)
    assert store.total == 2


def test_replaces_only_for_a_ua_that_announced_it() -> None:
    assert rejoin_method(record(0)) == "replaces"
    assert rejoin_method(record(1)) == "reinvite"


def test_history_keeps_what_a_member_may_have_missed() -> None:
    history: History[str] = History()
    for i in range(HISTORY + 5):
        history.seen(GROUP, f"m{i}", float(i))
    history.seen("sip:other@example.com", "x", 0.0)
    now = float(HISTORY + 5)
    assert history.since(GROUP, now - 3, now) == [f"m{HISTORY + i}" for i in (2, 3, 4)]
    assert len(history.since(GROUP, 0.0, now)) == min(HISTORY, int(HISTORY_SECONDS))
    assert history.since(GROUP, 0.0, now + 1000) == []  # too old to be worth sending
    history.forget(GROUP)
    assert history.since(GROUP, 0.0, now) == []


def test_the_holder_says_how_many_of_a_dead_instance_it_held() -> None:
    """What a restarted origin compares with what it had (restore.Restoring)."""
    store = Replicas()
    store.on_batch(batch(record(1), record(2), reset=True), 0.0)
    store.on_batch(batch(record(3), reset=True, origin="node2"), 0.0)
    assert store.previous("node1", GROUP) == 0  # alive: nothing of it declared dead
    store.on_batch(batch(reset=True, instance="b"), 1.0)  # node1 restarted
    assert store.previous("node1", GROUP) == 2
    assert store.previous("node1", "sip:other@example.com") == 0
    store.on_batch(batch(origin="node2"), 1.0)
    store.tick(1.0 + DEAD_AFTER)  # node2 silent (node1's instance b held nothing here)
    assert store.previous("node2", GROUP) == 1
    assert store.previous("node1", GROUP) == 2
    assert Replicas().previous("node1", GROUP) == 0  # a restarted holder knows nothing
