"""Templated in-dialog requests parse back to what they claim to be."""

from __future__ import annotations

from sipfleet.node.focus import Member, peer_of, shard_uri, user_of
from sipfleet.node.sip import SipRequest, parse_message
from sipfleet.node.transport import Peer


def member() -> Member:
    contact = "sip:alice@127.0.0.1:5062"
    return Member(
        "sip:alice@example.com",
        contact,
        peer_of(contact),
        "call-1",
        "theirs",
        "ours",
        "sip:conf3-main@127.0.0.10:5060",
    )


def test_message_from_templates() -> None:
    m = member()
    first = m.request("MESSAGE", "127.0.0.10:5060", b"Content-Type: text/plain\r\n", b"hi")
    second = m.request("MESSAGE", "127.0.0.10:5060", b"Content-Type: text/plain\r\n", b"yo!")
    parsed = parse_message(first.to_bytes())
    assert isinstance(parsed, SipRequest)
    assert (parsed.method, parsed.uri, parsed.body) == ("MESSAGE", m.contact, b"hi")
    assert parsed.call_id == "call-1"
    assert (parsed.from_tag, parsed.to_tag) == ("ours", "theirs")
    assert parsed.via.transport == "UDP" and parsed.via.sent_by == "127.0.0.10:5060"
    assert first.via.branch == parsed.via.branch and first.via.branch.startswith("z9hG4bK")
    again = parse_message(second.to_bytes())
    assert isinstance(again, SipRequest)
    assert again.cseq == (parsed.cseq[0] + 1, "MESSAGE")
    assert again.via.branch != parsed.via.branch
    assert (
        parse_message(m.request("BYE", "h:1", b"", transport="tcp").to_bytes()).via.transport
        == "TCP"
    )


def test_uri_helpers() -> None:
    assert user_of("sip:conf3@example.com") == "conf3"
    assert user_of("sip:example.com") == ""
    assert shard_uri("sip:conf3@example.com", "node-2", "127.0.0.12", 5060) == (
        "sip:conf3-node-2@127.0.0.12:5060"
    )
    assert peer_of("sip:a@127.0.0.1") == Peer("udp", "127.0.0.1", 5060)
    assert peer_of("sip:a@127.0.0.1:5070;transport=TCP") == Peer("tcp", "127.0.0.1", 5070)
