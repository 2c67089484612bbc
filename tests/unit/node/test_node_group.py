"""The group core (group.py) in virtual time: joins, redirects, leaves, the fan-out
and its presentation per conference, rosters. No sockets: requests are built as
the parser would deliver them and actions are inspected."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.distribution import ROSTER_DELAY, Forward, RemoteShard, RosterChanged
from sipfleet.node.focus import Member, Shard
from sipfleet.node.group import (
    DeliveryFailed,
    FanOut,
    GroupAction,
    GroupCore,
    Joined,
    Left,
    Posted,
    Redirected,
    Reply,
)
from sipfleet.node.presentation import SenderDisplay
from sipfleet.node.redirect import RESERVATION_SECONDS, STOPPING_RETRY_AFTER
from sipfleet.node.routes import StaleGeneration
from sipfleet.node.s2s import Envelope
from sipfleet.node.sip import Headers, SipRequest, SipUri, format_hostport
from sipfleet.node.sip.target import request_target
from sipfleet.node.transport import Peer

GROUP = "sip:conf@example.com"
HERE = "sip:conf-main@127.0.0.2:5060"
NODE1 = "sip:conf-node1@127.0.0.3:5060"
NODE2 = "sip:conf-node2@127.0.0.4:5060"
OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 96 0\r\na=rtpmap:96 opus/48000/2\r\n"
)


class Loopback:
    """`group.Addresses` of a server at 127.0.0.2:5060 (real RFC 3263 targets)."""

    def local_uri(self, user: str, peer: Peer) -> str:
        suffix = ";transport=tcp" if peer.transport == "tcp" else ""
        return f"sip:{user}@{format_hostport('127.0.0.2', 5060)}{suffix}"

    def local_host(self, peer: Peer) -> str:
        return "127.0.0.2"

    def uri_for(self, uri: str, peer: Peer) -> str:
        return uri

    def target_of(self, uri: str, via: Peer) -> Peer:
        target = request_target(SipUri.parse(uri), via.transport)
        return Peer(target.transport.lower(), target.host, target.port)


ADDR = Loopback()


class Phone:
    """One member's side of its dialog: builds its requests."""

    def __init__(self, user: str, port: int) -> None:
        self.aor, self.port = f"sip:{user}@x", port
        self.peer = Peer("udp", "127.0.0.1", port)
        self.call_id, self.tag, self.cseq = f"call-{user}", f"tag-{user}", 1
        self.to_tag: str | None = None

    def request(
        self,
        method: str,
        body: bytes = b"",
        *,
        uri: str = GROUP,
        contact: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SipRequest:
        to = f"<{uri}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        headers = [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{self.cseq}"),
            ("From", f"<{self.aor}>;tag={self.tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} {method}"),
            ("Contact", contact or f"<sip:{self.aor[4:5]}@127.0.0.1:{self.port}>"),
            *extra,
        ]
        if body:
            ct = "application/sdp" if method == "INVITE" else "text/plain"
            headers.append(("Content-Type", ct))
        self.cseq += 1
        return SipRequest(method, uri, Headers(headers), body)


def reply(actions: list[GroupAction]) -> Reply:
    (first,) = [a for a in actions if isinstance(a, Reply)]
    return first


def join(
    core: GroupCore,
    phone: Phone,
    now: float = 0.0,
    *,
    uri: str = GROUP,
    extra: tuple[tuple[str, str], ...] = (),
) -> list[GroupAction]:
    invite = phone.request("INVITE", OFFER, uri=uri, extra=extra)
    actions = core.on_invite(invite, phone.peer, ADDR, now)
    answer = reply(actions)
    if answer.status == 200:
        phone.to_tag = answer.to_tag
    return actions


def one_shard(capacity: int = 10, display: SenderDisplay | None = None) -> GroupCore:
    core = GroupCore("main", 8, SenderDisplay.PREFIX)
    core.ensure_shard(GROUP, capacity, HERE, 0.0, display)
    return core


def test_a_join_answers_the_offer_and_adds_a_focus_dialog() -> None:
    core, alice = one_shard(), Phone("alice", 6000)
    actions = join(core, alice)
    answer = reply(actions)
    assert answer.status == 200 and actions[0] is answer  # the answer goes out first
    headers = dict(answer.headers)
    assert headers["Contact"] == "<sip:conf-main@127.0.0.2:5060>;isfocus"  # RFC 4579 5.1
    assert b"a=rtpmap:96 opus/48000/2" in answer.body and b"a=inactive" in answer.body
    (joined,) = [a for a in actions if isinstance(a, Joined)]
    assert joined.member.aor == alice.aor and core.shards[GROUP].by_aor == {
        alice.aor: joined.member
    }
    assert core.roster(GROUP) == {alice.aor} and core.is_member(GROUP, alice.aor)


def test_a_late_offer_join_gets_an_offer_and_takes_the_answer_from_the_ack() -> None:
    core, bob = one_shard(), Phone("bob", 6001)
    actions = core.on_invite(bob.request("INVITE"), bob.peer, ADDR, 0.0)
    answer = reply(actions)
    assert answer.status == 200 and b"m=audio" in answer.body  # RFC 3264 5
    bob.to_tag = answer.to_tag
    member = core.shards[GROUP].by_aor[bob.aor]
    assert member.media.pending is not None
    core.on_ack(bob.request("ACK", OFFER.replace(b"96 0", b"0")))
    assert member.media.pending is None


@pytest.mark.parametrize(
    ("uri", "contact", "body", "status"),
    [
        ("sip:other@example.com", None, OFFER, 404),  # no such group
        (GROUP, "<tel:+123>", OFFER, 400),  # no SIP Contact
        (GROUP, "<sip:carol@phone.invalid>", OFFER, 403),  # unreachable (RFC 3263 4)
        (GROUP, None, b"v=0\r\nbroken", 488),  # an offer that does not parse
    ],
)
def test_a_bad_join_is_refused_and_adds_nobody(
    uri: str, contact: str | None, body: bytes, status: int
) -> None:
    core, carol = one_shard(), Phone("carol", 6002)
    actions = core.on_invite(
        carol.request("INVITE", body, uri=uri, contact=contact), carol.peer, ADDR, 0.0
    )
    assert [type(a) for a in actions] == [Reply] and reply(actions).status == status
    assert not core.shards[GROUP].members


def test_a_full_shard_redirects_with_reservations_that_expire() -> None:
    core = one_shard(capacity=1)
    core.put_routes(
        1,
        {
            GROUP: (
                RouteEntry("main", HERE, "active", 0),
                RouteEntry("node1", NODE1, "active", 2),
                RouteEntry("node2", NODE2, "active", 1),
            )
        },
        0.0,
    )
    assert reply(join(core, Phone("p0", 6000))).status == 200
    contacts = []
    for i in range(1, 5):
        actions = join(core, Phone(f"p{i}", 6000 + i), now=1.0)
        answer = reply(actions)
        contacts.append(dict(answer.headers).get("Contact") or answer.status)
        if answer.status == 302:
            assert Redirected(GROUP) in actions
    # Roomiest first, each 302 holding a seat: node1, then node1 or node2 (one each left)...
    assert sorted(contacts[:3]) == sorted([f"<{NODE1}>", f"<{NODE1}>", f"<{NODE2}>"])
    assert contacts[3] == 480  # every seat reserved: Group Full
    # The seats are freed when the reservations expire without the members showing up.
    later = 1.0 + RESERVATION_SECONDS + 0.1
    assert reply(join(core, Phone("p9", 6009), now=later)).status == 302


def test_a_roster_that_lists_a_redirected_member_frees_its_seat() -> None:
    core = one_shard(capacity=1)
    core.put_routes(
        1,
        {GROUP: (RouteEntry("main", HERE, "active", 0), RouteEntry("node1", NODE1, "active", 1))},
        0.0,
    )
    join(core, Phone("p0", 6000))
    assert reply(join(core, Phone("p1", 6001))).status == 302
    assert reply(join(core, Phone("p2", 6002))).status == 480  # the one seat is held for p1
    body = {"server": "node1", "uri": NODE1, "capacity": 2, "members": ["sip:p1@x"]}
    roster = Envelope(
        "roster", GROUP, "r1", "node1", "", "application/json", json.dumps(body).encode()
    )
    actions = core.on_envelope(roster, up=True, now=1.0)  # from a child: main is the root
    remote = RemoteShard("node1", NODE1, 2, frozenset({"sip:p1@x"}))
    assert [type(a) for a in actions] == [Forward, RosterChanged]  # down the tree, then here
    assert actions[1] == RosterChanged(GROUP, remote)
    assert core.is_member(GROUP, "sip:p1@x")  # known from the roster
    assert reply(join(core, Phone("p3", 6003), now=1.0)).status == 302  # p1's seat is free again


def test_a_draining_server_redirects_every_join() -> None:
    core = one_shard()
    core.put_routes(
        1,
        {GROUP: (RouteEntry("main", HERE, "active", 0), RouteEntry("node1", NODE1, "active", 5))},
        0.0,
    )
    core.drain(0.0)
    assert reply(join(core, Phone("p0", 6000))).status == 302


def test_a_draining_server_with_no_room_anywhere_answers_503() -> None:
    core = one_shard()
    core.drain(0.0)  # no routes: no other server to send the join to
    answer = reply(join(core, Phone("p0", 6000)))
    assert answer.status == 503  # RFC 3261 21.5.4: this server is stopping
    assert dict(answer.headers)["Retry-After"] == str(STOPPING_RETRY_AFTER)


def test_bye_leaves_once_and_a_second_bye_gets_481() -> None:
    core, alice = one_shard(), Phone("alice", 6000)
    join(core, alice)
    member = core.shards[GROUP].by_aor[alice.aor]
    actions = core.on_bye(alice.request("BYE"), 1.0)
    assert actions == [Reply(200), Left(core.shards[GROUP], member, "bye_received", bye=False)]
    assert not core.shards[GROUP].members
    assert core.on_bye(alice.request("BYE"), 2.0) == [Reply(481)]  # RFC 3261 12.2.2


def test_an_in_dialog_request_out_of_order_gets_500() -> None:
    core, alice = one_shard(), Phone("alice", 6000)
    join(core, alice)
    alice.cseq = 1  # not above the INVITE's
    assert core.on_message(alice.request("MESSAGE", b"hi"), 1.0) == [
        Reply(500, reason="CSeq Out Of Order")
    ]


def test_a_target_refresh_to_an_unreachable_contact_is_refused_and_not_taken() -> None:
    core, alice = one_shard(), Phone("alice", 6000)
    join(core, alice)
    member = core.shards[GROUP].by_aor[alice.aor]
    before = member.dialog.remote_target
    actions = core.on_invite(
        alice.request("INVITE", OFFER, contact="<sip:a@pc.invalid>"), alice.peer, ADDR, 1.0
    )
    assert reply(actions).status == 403 and member.dialog.remote_target == before


def test_unacked_2xx_ends_the_session_with_bye() -> None:
    core, alice = one_shard(), Phone("alice", 6000)
    invite = alice.request("INVITE", OFFER)
    core.on_invite(invite, alice.peer, ADDR, 0.0)
    (member,) = core.shards[GROUP].members.values()
    assert core.on_unacked(invite, 32.0) == [Left(core.shards[GROUP], member, "unacked", bye=True)]
    assert core.on_unacked(invite, 33.0) == []


def test_cancel_and_options() -> None:
    assert GroupCore.on_cancel(True) == [Reply(200)]
    assert GroupCore.on_cancel(False) == [Reply(481)]  # RFC 3261 9.2
    (options,) = GroupCore.on_options()
    assert isinstance(options, Reply) and "MESSAGE" in dict(options.headers)["Allow"]


def fan_out(actions: list[GroupAction]) -> FanOut:
    (out,) = [a for a in actions if isinstance(a, FanOut)]
    return out


def test_a_group_message_is_taken_then_fanned_out_to_everyone_but_the_sender() -> None:
    core = one_shard()
    phones = [Phone(u, 6000 + i) for i, u in enumerate(("alice", "bob", "carol"))]
    for p in phones:
        join(core, p)
    actions = core.on_message(phones[0].request("MESSAGE", b"hello"), 1.0)
    assert actions[:2] == [Reply(200), Posted(GROUP)]  # answered before the fan-out
    out = fan_out(actions)
    assert [m.aor for m in out.recipients] == [phones[1].aor, phones[2].aor]
    assert out.envelope.sender == phones[0].aor and out.mode is SenderDisplay.PREFIX
    assert [p.body for _, p in out.sends()] == [b"alice: hello", b"alice: hello"]
    assert out.duplicates == 0


def test_a_lone_member_message_fans_out_to_nobody() -> None:
    core, alice = one_shard(), Phone("alice", 6000)
    join(core, alice)
    actions = core.on_message(alice.request("MESSAGE", b"hi"), 1.0)
    assert actions[:2] == [Reply(200), Posted(GROUP)]
    (out,) = actions[2:]  # to nobody, but the shell keeps it for members it brings back
    assert isinstance(out, FanOut) and out.recipients == ()


def test_out_of_dialog_messages_only_from_members() -> None:
    core, alice, mallory = one_shard(), Phone("alice", 6000), Phone("mallory", 6666)
    join(core, alice)
    join(core, Phone("bob", 6001))
    assert core.on_message(mallory.request("MESSAGE", b"x"), 1.0) == [
        Reply(403, reason="Not A Member")
    ]
    assert core.on_message(mallory.request("MESSAGE", b"x", uri="sip:nope@example.com"), 1.0) == [
        Reply(404, reason="No Such Group")
    ]
    outsider = Phone("alice", 7000)  # alice's AOR, outside her dialog
    outsider.call_id = "other-call"
    assert (
        fan_out(core.on_message(outsider.request("MESSAGE", b"x"), 1.0)).envelope.sender
        == alice.aor
    )


def test_the_sender_display_is_per_conference() -> None:
    core = GroupCore("main", 8, SenderDisplay.PREFIX)  # the server's default
    other = "sip:other@example.com"
    core.ensure_shard(GROUP, 10, HERE, 0.0, SenderDisplay.CPIM)
    core.ensure_shard(other, 10, "sip:other-main@127.0.0.2:5060", 0.0)  # no mode: the default
    for group in (GROUP, other):
        sender, receiver = Phone("alice", 6000), Phone("bob", 6001)
        for p in (sender, receiver):
            p.call_id += group
            join(core, p, uri=group)
        out = fan_out(core.on_message(sender.request("MESSAGE", b"hi", uri=group), 1.0))
        ((_, shown),) = list(out.sends())
        if group == GROUP:
            assert out.mode is SenderDisplay.CPIM and b'From: "alice"<sip:alice@x>' in shown.body
        else:
            assert out.mode is SenderDisplay.PREFIX and shown.body == b"alice: hi"
    core.ensure_shard(other, 10, "ignored", 2.0, SenderDisplay.DISPLAY_NAME)  # a later change
    assert core.shards[other].sender_display is SenderDisplay.DISPLAY_NAME
    assert core.shards[other].uri == "sip:other-main@127.0.0.2:5060"  # the URI is kept


def test_auto_follows_each_members_accept_header() -> None:
    core = one_shard(display=SenderDisplay.AUTO)
    alice, bob, carol = Phone("alice", 6000), Phone("bob", 6001), Phone("carol", 6002)
    join(core, alice)
    join(core, bob, extra=(("Accept", "application/sdp, message/cpim"),))
    join(core, carol)
    core.on_message(carol.request("MESSAGE", b"x", extra=(("Accept", "message/cpim"),)), 1.0)
    out = fan_out(core.on_message(alice.request("MESSAGE", b"hi"), 2.0))
    shown = {m.aor: {n: v for _, n, v in p.extra.items}["Content-Type"] for m, p in out.sends()}
    assert shown == {bob.aor: "message/cpim", carol.aor: "message/cpim"}
    out = fan_out(core.on_message(bob.request("MESSAGE", b"yo"), 3.0))
    assert {m.aor: p.body for m, p in out.sends()}[alice.aor] == b"bob: yo"


def test_delivery_outcomes_and_a_member_removed_once() -> None:
    core = one_shard()
    alice, bob = Phone("alice", 6000), Phone("bob", 6001)
    join(core, alice)
    join(core, bob)
    shard = core.shards[GROUP]
    a, b = shard.by_aor[alice.aor], shard.by_aor[bob.aor]
    assert core.delivery_answered(shard, a, 200, 1.0) == []
    assert core.delivery_answered(shard, a, 486, 1.0) == [DeliveryFailed(486)]  # kept
    assert core.delivery_answered(shard, a, 481, 1.0) == [
        DeliveryFailed(481),
        Left(shard, a, "dialog_gone", bye=False),  # RFC 3261 12.2.1.2: no dialog to BYE
    ]
    assert core.delivery_answered(shard, b, None, 1.0) == [
        DeliveryFailed(None),
        Left(shard, b, "delivery_timeout", bye=True),  # maybe only slow: tell it
    ]
    assert core.delivery_answered(shard, b, 408, 2.0) == [DeliveryFailed(408)]  # already gone
    assert not shard.members


def test_a_transferring_recipient_counts_as_a_possible_duplicate() -> None:
    core = one_shard()
    alice, bob = Phone("alice", 6000), Phone("bob", 6001)
    join(core, alice)
    join(core, bob)
    core.shards[GROUP].by_aor[bob.aor].state = "transferring"
    assert fan_out(core.on_message(alice.request("MESSAGE", b"hi"), 1.0)).duplicates == 1


def node1_core() -> GroupCore:
    """node1, a child of main in the group's tree."""
    core = GroupCore("node1", 8, SenderDisplay.PREFIX)
    core.ensure_shard(GROUP, 5, NODE1, 0.0)
    core.put_routes(
        1,
        {GROUP: (RouteEntry("main", HERE, "active", 0), RouteEntry("node1", NODE1, "active", 5))},
        0.0,
    )
    return core


def run(core: GroupCore, until: float) -> list[tuple[float, GroupAction]]:
    out: list[tuple[float, GroupAction]] = []
    while (deadline := core.next_deadline()) is not None and deadline <= until:
        out += [(deadline, a) for a in core.tick(deadline)]
    return out


def rosters(actions: list[tuple[float, GroupAction]]) -> list[tuple[float, int, list[str]]]:
    out = []
    for when, a in actions:
        assert isinstance(a, Forward) and a.direction == "up" and a.entry.server == "main"
        data = json.loads(a.envelope.body)
        out.append((when, data["capacity"], data["members"]))
    return out


def test_roster_changes_are_coalesced_and_reported_up_the_tree() -> None:
    core = node1_core()
    assert rosters(run(core, 1.0)) == [(ROSTER_DELAY, 5, [])]
    join(core, Phone("alice", 6000), now=2.0)
    join(core, Phone("bob", 6001), now=2.01)
    assert run(core, 2.0 + ROSTER_DELAY / 2) == []
    assert rosters(run(core, 3.0)) == [(2.0 + ROSTER_DELAY, 5, ["sip:alice@x", "sip:bob@x"])]
    core.drain(4.0)  # no more room announced
    assert rosters(run(core, 5.0)) == [(4.0 + ROSTER_DELAY, 0, ["sip:alice@x", "sip:bob@x"])]


def test_a_message_on_a_child_goes_up_to_the_root_and_comes_down_once() -> None:
    core = node1_core()
    alice, bob = Phone("alice", 6000), Phone("bob", 6001)
    join(core, alice)
    join(core, bob)
    actions = core.on_message(alice.request("MESSAGE", b"hi"), 1.0)
    up = [a for a in actions if isinstance(a, Forward)]
    assert [a.direction for a in up] == ["up"] and not [a for a in actions if isinstance(a, FanOut)]
    envelope = up[0].envelope
    out = fan_out(core.on_envelope(envelope, up=False, now=1.1))  # the root sends it down
    assert [m.aor for m in out.recipients] == [bob.aor]
    assert core.on_envelope(envelope, up=False, now=1.2) == []  # exactly once per server


def test_deleting_a_shard_byes_its_members_and_reports_it_empty() -> None:
    core = node1_core()
    alice = Phone("alice", 6000)
    join(core, alice)
    shard = core.shards[GROUP]
    (member,) = shard.members.values()
    gone, actions = core.delete_shard(GROUP, 1.0)
    assert gone is shard and actions[0] == Left(shard, member, "shard_deleted", bye=True)
    (roster,) = rosters([(1.0, a) for a in actions[1:]])
    assert roster == (1.0, 0, [])
    assert GROUP not in core.shards and run(core, 5.0) == []  # nothing left to report
    with pytest.raises(LookupError):
        core.delete_shard(GROUP, 2.0)
    assert core.resolve(alice.request("MESSAGE", uri=GROUP)) == (GROUP, None)  # still routed


def test_the_same_routes_generation_again_is_a_no_op_and_an_older_one_refused() -> None:
    core = node1_core()
    assert not core.put_routes(1, {}, 1.0)
    assert core.routes.generation == 1 and core.routes.entries(GROUP)
    with pytest.raises(StaleGeneration):
        core.put_routes(0, {}, 1.0)


def test_a_member_is_a_core_dialog() -> None:
    """What the shell sends in a member's dialog follows the dialog (RFC 3261 12.2.1.1)."""
    core, alice = one_shard(), Phone("alice", 6000)
    join(core, alice)
    member: Member = core.shards[GROUP].by_aor[alice.aor]
    assert member.peer == alice.peer
    shard: Shard = core.shards[GROUP]
    assert core.dialog(alice.request("BYE")) == (shard, member)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["join", "bye", "message", "timeout", "gone", "unacked"]),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=40,
)


@given(ops=OPS)
def test_any_sequence_keeps_the_member_table_consistent(ops: list[tuple[str, int]]) -> None:
    """Whatever members do, in whatever order: a shard never holds more than its
    capacity, every member leaves at most once (counted once), Joined minus Left is
    the member count, and a fan-out reaches every member but the sender."""
    core = one_shard(capacity=3)
    shard = core.shards[GROUP]
    phones = [Phone(f"u{i}", 6000 + i) for i in range(6)]
    invites: dict[int, SipRequest] = {}
    joined = left = 0
    gone: set[Member] = set()  # members that left (by identity: Member has eq=False)
    last: dict[int, Member] = {}  # each phone's latest dialog, also after it left
    now = 0.0
    for op, i in ops:
        now += 0.5
        phone = phones[i]
        member = shard.by_aor.get(phone.aor)
        if member is not None:
            last[i] = member
        actions: list[GroupAction] = []
        if op == "join" and member is None:
            phone.to_tag, phone.call_id = None, f"call-u{i}-{now}"
            invites[i] = phone.request("INVITE", OFFER)
            actions = core.on_invite(invites[i], phone.peer, ADDR, now)
            answer = reply(actions)
            assert answer.status in (200, 480)  # 480: full, and no other server
            if answer.status == 200:
                phone.to_tag = answer.to_tag
        elif op == "bye" and phone.to_tag:
            actions = core.on_bye(phone.request("BYE"), now)
        elif op == "message":
            actions = core.on_message(phone.request("MESSAGE", b"x"), now)
            fanned = [a for a in actions if isinstance(a, FanOut)]
            if member is None:
                assert not fanned
            else:
                expected = {m.aor for m in shard.members.values()} - {phone.aor}
                assert {m.aor for f in fanned for m in f.recipients} == expected
        elif op in ("timeout", "gone") and i in last:
            # A delivery's final answer, possibly late: after the member left.
            status = None if op == "timeout" else 481
            actions = core.delivery_answered(shard, last[i], status, now)
        elif op == "unacked" and i in invites:
            actions = core.on_unacked(invites[i], now)
        for action in actions:
            if isinstance(action, Joined):
                joined += 1
            elif isinstance(action, Left):
                assert action.member not in gone, "a member left twice"
                gone.add(action.member)
                left += 1
        assert len(shard.members) <= shard.capacity
        assert joined - left == len(shard.members) == len(shard.by_aor)
        assert core.roster(GROUP) == set(shard.by_aor)
