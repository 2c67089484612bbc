"""Dialog replication in virtual time: records, batches, holders, heartbeats, resends."""

from __future__ import annotations

import json

import pytest
from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.focus import Member, peer_of
from sipfleet.node.replicas import (
    BATCH_DELAY,
    HEARTBEAT,
    MAX_BATCH,
    MAX_ROUTES,
    RETRY,
    Batch,
    DialogRecord,
    Outbox,
    holder_of,
    record_of,
)
from sipfleet.node.sip import Dialog

GROUP = "sip:conf@example.com"
MAIN = "sip:conf-main@127.0.0.2:5060"
NODE = "sip:conf-node1@127.0.0.3:5060"


def record(i: int, group: str = GROUP, **changes: object) -> DialogRecord:
    fields: dict[str, object] = {
        "group": group,
        "aor": f"sip:m{i}@x",
        "call_id": f"call-{i}",
        "local_tag": f"ours{i}",
        "remote_tag": f"theirs{i}",
        "local_uri": f"<{GROUP}>",
        "remote_uri": f"<sip:m{i}@x>",
        "remote_target": f"sip:m{i}@127.0.0.1:{6000 + i}",
        "route_set": ("<sip:edge@127.0.0.9;lr>",),
        "local_cseq": 7,
        "remote_cseq": 3,
        "transport": "udp",
        "supports_replaces": i % 2 == 0,
        "accepts_cpim": False,
    }
    fields.update(changes)
    return DialogRecord(**fields)  # type: ignore[arg-type]


def test_record_of_a_member_keeps_its_dialog() -> None:
    dialog = Dialog(
        "c1", "ours", "theirs", f"<{GROUP}>", "<sip:a@x>", "sip:a@127.0.0.1:7000;transport=tcp",
        ["<sip:p@127.0.0.9;lr>"], local_cseq=12, remote_cseq=4,
    )  # fmt: skip
    rec = record_of(GROUP, Member("sip:a@x", dialog, peer_of, True, accepts_cpim=True))
    assert rec.key == ("c1", "ours")
    assert (rec.remote_target, rec.route_set) == (dialog.remote_target, ("<sip:p@127.0.0.9;lr>",))
    assert (rec.local_cseq, rec.remote_cseq, rec.supports_replaces) == (12, 4, True)
    assert rec.transport == "udp"  # the next hop is the (loose) route, over UDP


def test_a_batch_round_trips_through_its_body() -> None:
    batch = Batch("node1", "i1", GROUP, MAIN, True, (record(1), record(2)), (("c", "t"),))
    assert Batch.from_bytes(batch.to_bytes(), MAIN) == batch


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(upsert=[record(i).to_json() for i in range(MAX_BATCH + 1)]),
        lambda d: d.update(remove=[["a"]]),
        lambda d: d.update(group=""),
        lambda d: d["upsert"][0].update(local_cseq=2**31),
        lambda d: d["upsert"][0].update(local_cseq=True),
        lambda d: d["upsert"][0].update(transport="tls"),
        lambda d: d["upsert"][0].update(call_id="x" * 5000),
        lambda d: d["upsert"][0].update(route_set=["<sip:a>"] * (MAX_ROUTES + 1)),
        lambda d: d["upsert"][0].update(group="sip:other@example.com"),
        lambda d: d["upsert"][0].pop("aor"),
    ],
)
def test_a_malformed_batch_is_refused(mutate: object) -> None:
    data = json.loads(Batch("n", "i", GROUP, MAIN, False, (record(1),), ()).to_bytes())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ValueError):
        Batch.from_bytes(json.dumps(data).encode(), MAIN)


@pytest.mark.parametrize("body", [b"\xff", b"[]", b"{", b'{"upsert": 1}'])
def test_garbage_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        Batch.from_bytes(body, MAIN)


def entry(server: str, uri: str, state: str = "active") -> RouteEntry:
    return RouteEntry(server, uri, state)  # type: ignore[arg-type]


def test_the_root_holds_the_nodes_and_its_first_active_node_holds_the_root() -> None:
    table = [
        entry("main", MAIN),
        entry("node1", NODE, "draining"),
        entry("node2", "sip:conf-node2@127.0.0.4:5060"),
    ]
    assert holder_of("node1", table) == table[0]
    assert holder_of("node2", table) == table[0]
    assert holder_of("main", table) == table[2]
    assert holder_of("main", table[:2]) == table[1]  # only a draining one: still better
    assert holder_of("main", table[:1]) is None  # alone
    assert holder_of("node9", table) is None  # not in the group


def test_changes_are_batched_and_heartbeats_follow() -> None:
    box = Outbox("node1", "inst")
    box.set_holder(GROUP, MAIN, 0.0)
    first = box.due(0.0)
    assert [(b.reset, b.upsert) for b in first] == [(True, ())]  # an empty reset first
    assert box.due(0.0) == []  # one in flight per group
    box.answered(first[0], "h1", 0.01)
    box.put(record(1), 0.02)
    box.put(record(2), 0.03)
    assert box.next_deadline() == pytest.approx(0.02 + BATCH_DELAY)
    (second,) = box.due(0.02 + BATCH_DELAY)
    assert not second.reset and {r.key for r in second.upsert} == {record(1).key, record(2).key}
    box.answered(second, "h1", 0.1)
    assert box.next_deadline() == pytest.approx(0.1 + HEARTBEAT)
    (beat,) = box.due(0.1 + HEARTBEAT)
    assert (beat.upsert, beat.remove, beat.reset) == ((), (), False)
    box.answered(beat, "h1", 1.2)
    box.drop(GROUP, record(1).key, 1.3)
    (third,) = box.due(1.3 + BATCH_DELAY)
    assert third.remove == (record(1).key,) and box.records(GROUP) == 1


def test_large_changes_go_in_bounded_batches() -> None:
    box = Outbox("node1", "inst")
    for i in range(MAX_BATCH * 2 + 1):
        box.put(record(i), 0.0)
    box.set_holder(GROUP, MAIN, 0.0)
    sizes = []
    while batches := box.due(1.0):
        (b,) = batches
        sizes.append(len(b.upsert))
        box.answered(b, "h1", 1.0)
    assert sizes == [MAX_BATCH, MAX_BATCH, 1]


def test_a_failure_or_a_restarted_holder_gets_everything_again() -> None:
    box = Outbox("node1", "inst")
    box.put(record(1), 0.0)
    box.set_holder(GROUP, MAIN, 0.0)
    (b,) = box.due(0.0)
    box.answered(b, None, 0.5)  # timeout
    assert box.due(0.5 + RETRY - 0.01) == []
    (again,) = box.due(0.5 + RETRY)
    assert again.reset and again.upsert == (record(1),)
    box.answered(again, "h1", 2.0)
    (beat,) = box.due(2.0 + HEARTBEAT)
    box.answered(beat, "h2", 3.1)  # the holder restarted
    (full,) = box.due(3.1)
    assert full.reset and full.upsert == (record(1),)


def test_a_new_holder_gets_everything_and_the_old_one_a_release() -> None:
    box = Outbox("main", "inst")
    box.put(record(1), 0.0)
    box.set_holder(GROUP, NODE, 0.0)
    (b,) = box.due(0.0)
    box.answered(b, "h1", 0.1)
    box.set_holder(GROUP, MAIN.replace("main", "node2"), 0.2)
    release, full = box.due(0.2)
    assert (release.holder, release.reset, release.upsert) == (NODE, True, ())
    assert full.reset and full.upsert == (record(1),) and full.holder != NODE
    box.answered(b, "h1", 0.3)  # a late answer from the old holder changes nothing
    assert box.due(0.3) == []


def test_without_a_holder_nothing_is_sent() -> None:
    box = Outbox("main", "inst")
    box.put(record(1), 0.0)
    assert box.due(10.0) == [] and box.next_deadline() is None
    box.set_holder(GROUP, NODE, 10.0)
    (b,) = box.due(10.0)
    box.forget_group(GROUP)
    (release,) = box.due(10.1)
    assert release.holder == NODE and release.reset and release.upsert == ()
    box.answered(b, "h", 10.2)
    assert box.due(20.0) == [] and box.records(GROUP) == 0
