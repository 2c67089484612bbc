"""The transfer logic in virtual time: pacing, REFER vs Replaces, outcomes, no member lost."""

from __future__ import annotations

import pytest
from sipfleet.node.admin_types import Conflict, TransferRequest
from sipfleet.node.focus import Member, Shard, peer_of
from sipfleet.node.s2s import MEMBER_ROUTE
from sipfleet.node.sip import Dialog
from sipfleet.node.transfers import (
    CONFIRM_GRACE,
    TRANSFER_TIMEOUT,
    Finished,
    Release,
    SendRefer,
    SendServerRefer,
    TransferAction,
    Transfers,
)

GROUP = "sip:conf@example.com"
TARGET = "sip:conf-node1@127.0.0.3:5060"
OK = b"SIP/2.0 200 OK\r\n"


def shard(n: int, *, replaces: bool = False, routes: tuple[str, ...] = ()) -> Shard:
    s = Shard(GROUP, "sip:conf-main@127.0.0.2:5060", 100)
    for i in range(n):
        dialog = Dialog(
            f"call-{i}", f"ours{i}", f"theirs{i}", f"<{GROUP}>", f"<sip:m{i}@x>",
            f"sip:m{i}@127.0.0.1:{6000 + i}", list(routes),
        )  # fmt: skip
        s.add(Member(f"sip:m{i}@x", dialog, peer_of, replaces))
    return s


def run(core: Transfers, until: float) -> list[tuple[float, TransferAction]]:
    out: list[tuple[float, TransferAction]] = []
    while (deadline := core.next_deadline()) is not None and deadline <= until:
        out += [(deadline, a) for a in core.tick(deadline)]
    return out


def test_refers_are_paced_against_the_start() -> None:
    core, s = Transfers("127.0.0.2"), shard(5)
    job = core.start(TransferRequest(GROUP, TARGET, "refer", 10.0, count=4), s, 100.0)
    assert job.requested == 4 and job.state == "running"
    sent = run(core, 100.35)
    assert [t for t, _ in sent] == pytest.approx([100.0, 100.1, 100.2, 100.3])
    assert all(isinstance(a, SendRefer) and a.target == TARGET for _, a in sent)
    assert [m.state for m in s.members.values()] == ["transferring"] * 4 + ["joined"]


def test_moved_when_the_roster_lists_the_member() -> None:
    core, s = Transfers("h"), shard(1)
    job = core.start(TransferRequest(GROUP, TARGET, "refer", 50.0, count=1), s, 0.0)
    ((_, refer),) = run(core, 0.0)
    assert isinstance(refer, SendRefer)
    assert core.refer_answered(refer.item, 202, 0.1) == []
    matched, actions = core.on_notify("call-0", OK, 0.5)  # the member is still here
    assert matched and actions == []
    actions = core.on_roster(TARGET, frozenset({"sip:m0@x"}), 0.6)
    assert actions == [Finished("moved"), Release(refer.item)]
    assert core.get(job.id).state == "done" and core.get(job.id).moved == 1
    assert core.on_notify("call-0", OK, 1.0) == (True, [])  # late NOTIFY: still ours
    run(core, 1.0 + TRANSFER_TIMEOUT)
    assert core.on_notify("call-0", OK, 40.0) == (False, [])  # forgotten after a while


def test_a_2xx_sipfrag_without_the_roster_confirms_after_the_grace() -> None:
    core, s = Transfers("h"), shard(1)
    core.start(TransferRequest(GROUP, TARGET, "refer", 50.0, count=1), s, 0.0)
    ((_, refer),) = run(core, 0.0)
    core.on_notify("call-0", OK, 1.0)
    events = run(core, 1.0 + CONFIRM_GRACE)
    assert [a for _, a in events] == [Finished("moved"), Release(refer.item)]  # type: ignore[union-attr]


def test_failures_keep_the_member() -> None:
    core, s = Transfers("h"), shard(3)
    job = core.start(TransferRequest(GROUP, TARGET, "refer", 100.0, count=3), s, 0.0)
    refers = [a for _, a in run(core, 0.02)]
    first, _, third = (a.item for a in refers if isinstance(a, SendRefer))
    assert core.refer_answered(first, 603, 0.1) == [Finished("failed")]
    assert core.on_notify("call-1", b"SIP/2.0 486 Busy Here\r\n", 0.2) == (
        True,
        [Finished("failed")],
    )
    late = run(core, TRANSFER_TIMEOUT + 1.0)  # the third never reports: timeout
    assert [a for _, a in late] == [Finished("failed")]
    assert core.get(job.id).model_dump() | {"id": ""} == {
        "id": "",
        "group": GROUP,
        "target": TARGET,
        "method": "refer",
        "rate": 100.0,
        "requested": 3,
        "moved": 0,
        "failed": 3,
        "state": "failed",
        "pending": 0,
    }
    assert [m.state for m in s.members.values()] == ["joined"] * 3
    assert len(s.members) == 3  # no member lost: all still here
    assert third.state == "failed"


def test_refer_to_server_uses_replaces_only_where_supported() -> None:
    route = "<sip:edge@127.0.0.7;lr>"
    core = Transfers("127.0.0.2")
    with_replaces = shard(1, replaces=True, routes=(route,))
    core.start(TransferRequest(GROUP, TARGET, "refer-to-server", 50.0, count=1), with_replaces, 0)
    ((_, action),) = run(core, 0.0)
    assert isinstance(action, SendServerRefer) and action.target == TARGET
    headers = dict(action.headers)
    replaces = action.replaces
    assert (replaces.call_id, replaces.to_tag, replaces.from_tag) == ("call-0", "theirs0", "ours0")
    assert headers[MEMBER_ROUTE] == route
    without = shard(1)  # announced nothing: REFER in its dialog instead (RFC 3891 6)
    core.start(TransferRequest(GROUP, TARGET, "refer-to-server", 50.0, count=1), without, 1.0)
    ((_, fallback),) = run(core, 1.0)
    assert isinstance(fallback, SendRefer)


def test_member_gone_before_its_turn_fails_it_and_bad_requests_raise() -> None:
    core, s = Transfers("h"), shard(2)
    core.start(TransferRequest(GROUP, TARGET, "refer", 1.0, count=2), s, 0.0)
    run(core, 0.0)
    second = list(s.members.values())[1]
    s.remove(second)
    assert core.on_member_left(second, 0.5) == [Finished("failed")]
    assert run(core, 1.0) == []  # its turn: nothing to send
    with pytest.raises(LookupError):
        core.start(TransferRequest(GROUP, TARGET, "refer", 1.0, count=1), None, 2.0)
    with pytest.raises(ValueError, match="own shard"):
        core.start(TransferRequest(GROUP, s.uri, "refer", 1.0, count=1), s, 2.0)
    with pytest.raises(ValueError, match="not members"):
        core.start(TransferRequest(GROUP, TARGET, "refer", 1.0, members=("sip:z@x",)), s, 2.0)
    with pytest.raises(Conflict):  # the one left is still moving
        core.start(TransferRequest(GROUP, TARGET, "refer", 1.0, count=1), s, 2.0)
    with pytest.raises(LookupError):
        core.get("nope")
