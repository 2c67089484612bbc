"""Member dialogs: in-dialog requests on the fast path follow RFC 3261 12.2.1.1."""

from __future__ import annotations

from sipfleet.node.focus import (
    Member,
    focus_contact,
    peer_of,
    shard_uri,
    supports_replaces,
    user_of,
)
from sipfleet.node.sip import Dialog, Headers, SipRequest, parse_message
from sipfleet.node.sip.message import HeaderBlock, Outbound
from sipfleet.node.transport import Peer


def member(routes: tuple[str, ...] = ()) -> Member:
    invite = SipRequest(
        "INVITE",
        "sip:conf3@example.com",
        Headers(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1"),
                *(("Record-Route", r) for r in routes),
                ("From", '"Alice" <sip:alice@example.com>;tag=theirs'),
                ("To", "<sip:conf3@example.com>"),
                ("Call-ID", "call-1"),
                ("CSeq", "1 INVITE"),
                ("Contact", "<sip:alice@127.0.0.1:5062>"),
                ("Supported", "timer, replaces"),
            ]
        ),
    )
    dialog = Dialog.as_uas(invite, "ours", focus_contact("sip:conf3-main@127.0.0.10:5060"))
    return Member("sip:alice@example.com", dialog, peer_of, supports_replaces(invite))


def sent(outbound: Outbound) -> SipRequest:
    parsed = parse_message(outbound.data)
    assert isinstance(parsed, SipRequest)
    assert parsed.to_bytes() == outbound.request.to_bytes()  # the two forms agree
    return parsed


def test_message_on_the_fast_path() -> None:
    m = member()
    assert m.supports_replaces
    extra = HeaderBlock([("Content-Type", "text/plain")])
    first = m.request("MESSAGE", "127.0.0.10:5060", extra, b"hi")
    second = m.request("MESSAGE", "127.0.0.10:5060", extra, b"yo!")
    parsed = sent(first)
    assert (parsed.method, parsed.uri, parsed.body) == (
        "MESSAGE",
        "sip:alice@127.0.0.1:5062",
        b"hi",
    )
    assert parsed.call_id == "call-1"
    assert (parsed.from_tag, parsed.to_tag) == ("ours", "theirs")
    # RFC 4579: the identities the dialog was created with, not the shard's URI
    assert parsed.from_.uri == "sip:conf3@example.com" and parsed.to.display == "Alice"
    assert parsed.contact is None and "Route" not in parsed.headers
    assert parsed.via.transport == "UDP" and parsed.via.sent_by == "127.0.0.10:5060"
    assert first.branch == parsed.via.branch and first.branch.startswith("z9hG4bK")
    again = sent(second)
    assert again.cseq == (parsed.cseq[0] + 1, "MESSAGE")
    assert again.via.branch != parsed.via.branch
    assert sent(m.request("BYE", "h:1", transport="tcp")).via.transport == "TCP"
    refer = sent(m.request("REFER", "h:1"))
    assert refer.headers.get("Contact") == "<sip:conf3-main@127.0.0.10:5060>;isfocus"
    assert m.peer == Peer("udp", "127.0.0.1", 5062)


def test_loose_route_set_from_record_route() -> None:
    m = member(("<sip:127.0.0.7:5080;lr;transport=tcp>", "<sip:edge2.example.com;lr>"))
    msg = sent(m.request("MESSAGE", "127.0.0.10:5060"))
    assert msg.uri == "sip:alice@127.0.0.1:5062"  # Request-URI: the remote target
    assert msg.headers.get_list("Route") == [
        "<sip:127.0.0.7:5080;lr;transport=tcp>",
        "<sip:edge2.example.com;lr>",
    ]
    assert m.peer == Peer("tcp", "127.0.0.7", 5080)  # the first route (RFC 3261 8.1.2)


def test_strict_router_first() -> None:
    m = member(("<sip:127.0.0.8:5090;method=INVITE>", "<sip:p2.example.com;lr>"))
    bye = sent(m.request("BYE", "127.0.0.10:5060"))
    # 12.2.1.1: Request-URI is the strict router (no method parameter), the remote
    # target goes last in Route
    assert bye.uri == "sip:127.0.0.8:5090"
    assert bye.headers.get_list("Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:alice@127.0.0.1:5062>",
    ]
    assert m.peer == Peer("udp", "127.0.0.8", 5090)


def test_target_refresh_moves_the_requests() -> None:
    m = member()
    sent(m.request("MESSAGE", "h:1"))  # the precomputed block exists now
    reinvite = SipRequest(
        "INVITE",
        "sip:conf3@example.com",
        Headers(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK2"),
                ("From", "<sip:alice@example.com>;tag=theirs"),
                ("To", "<sip:conf3@example.com>;tag=ours"),
                ("Call-ID", "call-1"),
                ("CSeq", "2 INVITE"),
                ("Contact", "<sip:alice@127.0.0.9:6000;transport=tcp>"),
            ]
        ),
    )
    assert m.dialog.receive(reinvite) is None
    msg = sent(m.request("MESSAGE", "h:1"))
    assert msg.uri == "sip:alice@127.0.0.9:6000;transport=tcp"
    assert m.peer == Peer("tcp", "127.0.0.9", 6000)
    assert m.dialog.receive(reinvite) == 500  # the same CSeq again: out of order


def test_uri_helpers() -> None:
    assert user_of("sip:conf3@example.com") == "conf3"
    assert user_of("sip:example.com") == ""
    assert shard_uri("sip:conf3@example.com", "node-2", "127.0.0.12", 5060) == (
        "sip:conf3-node-2@127.0.0.12:5060"
    )
    assert peer_of("sip:a@127.0.0.1") == Peer("udp", "127.0.0.1", 5060)
    assert peer_of("sip:a@127.0.0.1:5070;transport=TCP") == Peer("tcp", "127.0.0.1", 5070)
