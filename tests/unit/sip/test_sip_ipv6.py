"""IPv6 in URIs and Via: the RFC 5118 torture cases, and what this server writes
(RFC 3261 section 25.1 IPv6reference)."""

from __future__ import annotations

import pytest
from sipfleet.node.sip import (
    SipParseError,
    SipRequest,
    SipUri,
    Via,
    address_of,
    check_request,
    format_host,
    format_hostport,
    parse_message,
)
from sipfleet.node.sip.target import Target, UnreachableTarget, request_target
from sipfleet.node.sip.uri import ip_literal, same_address
from sipfleet.node.sip.via import response_route, stamp_via


def _register(uri: str, via: str, contact: str) -> bytes:
    return (
        f"REGISTER {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:user@example.com>;tag=81x2\r\n"
        "To: <sip:user@example.com>\r\n"
        "Call-ID: SSG9559905523997077@hlau_4100\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"Contact: {contact}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_rfc5118_4_1_valid_ipv6_reference() -> None:
    msg = parse_message(
        _register(
            "sip:[2001:db8::10]",
            "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
            '"Caller" <sip:caller@[2001:db8::1]>',
        )
    )
    assert isinstance(msg, SipRequest)
    error = check_request(msg)  # valid syntax: refused only as this server has no registrar
    assert error is not None and error.status == 405
    uri = msg.request_uri
    assert (uri.host, uri.port) == ("[2001:db8::10]", None)
    assert msg.via.host == "[2001:db8::9:1]" and msg.via.sent_by == "[2001:db8::9:1]"
    contact = msg.contact
    assert contact is not None and contact.sip_uri.host == "[2001:db8::1]"


def test_rfc5118_4_2_unbracketed_ipv6_is_rejected() -> None:
    with pytest.raises(SipParseError):
        SipUri.parse("sip:2001:db8::10")
    msg = parse_message(
        _register(
            "sip:2001:db8::10",
            "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
            "<sip:caller@[2001:db8::1]>",
        )
    )
    assert isinstance(msg, SipRequest)
    error = check_request(msg)
    assert error is not None and error.status == 400


def test_rfc5118_4_3_and_4_4_port_ambiguity() -> None:
    ambiguous = SipUri.parse("sip:[2001:db8::10:5070]")
    assert (ambiguous.host, ambiguous.port) == ("[2001:db8::10:5070]", None)
    explicit = SipUri.parse("sip:[2001:db8::10]:5070")
    assert (explicit.host, explicit.port) == ("[2001:db8::10]", 5070)
    assert str(explicit) == "sip:[2001:db8::10]:5070"


@pytest.mark.parametrize("received", ["[2001:db8::9:255]", "2001:db8::9:255"])
def test_rfc5118_4_5_received_with_or_without_brackets(received: str) -> None:
    via = Via.parse(f"SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received={received}")
    assert via.received == received
    route = response_route(via, ("2001:db8::9:255", 1234), "UDP")
    assert route.address == ("2001:db8::9:255", 6050)


def test_rfc5118_4_7_ipv4_and_ipv6_vias() -> None:
    msg = parse_message(
        b"BYE sip:user@host.example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144\r\n"
        b"Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200\r\n"
        b"Call-ID: 997077@lau_4100\r\nMax-Forwards: 70\r\nCSeq: 89187 BYE\r\n"
        b"To: sip:user@example.net;tag=9817--94\r\nFrom: sip:user@example.com;tag=81x2\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(msg, SipRequest) and check_request(msg) is None
    assert [v.sent_by for v in msg.vias] == [
        "[2001:db8::9:1]:6050",
        "192.0.2.1",
        "[2001:db8::9:255]",
    ]


def test_rfc5118_4_9_ipv4_mapped_address() -> None:
    uri = SipUri.parse("sip:user@[::ffff:192.0.2.10]:5060")
    assert address_of(uri.host) == "::ffff:192.0.2.10"
    assert same_address(uri.host, "::ffff:c000:20a")
    assert not same_address(uri.host, "192.0.2.10")  # another address family


def test_rfc5118_4_10_abnf_bug_three_colons_is_read_liberally() -> None:
    # RFC 3261's ABNF let `2001:db8:::192.0.2.1` through; RFC 5118 asks parsers
    # to cope. It parses (the host is kept as written) and is no IP address.
    uri = SipUri.parse("sip:user@[2001:db8:::192.0.2.1]")
    assert uri.host == "[2001:db8:::192.0.2.1]" and ip_literal(uri.host) is None
    assert ip_literal(SipUri.parse("sip:user@[2001:db8::192.0.2.1]").host) is not None


@pytest.mark.parametrize(
    ("host", "port", "hostport"),
    [
        ("::1", 5060, "[::1]:5060"),
        ("[::1]", 5060, "[::1]:5060"),
        ("2001:db8::10", None, "[2001:db8::10]"),
        ("127.0.0.1", 5060, "127.0.0.1:5060"),
        ("example.com", None, "example.com"),
    ],
)
def test_hosts_written_with_ipv6_references(host: str, port: int | None, hostport: str) -> None:
    assert format_hostport(host, port) == hostport
    assert format_host(host) == hostport.rsplit(":", 1)[0] if port else hostport
    # What this server writes in URIs and Vias parses back to the same address.
    uri = SipUri("sip", host, user="conf3-main", port=port)
    assert str(uri) == f"sip:conf3-main@{hostport}"
    assert same_address(SipUri.parse(str(uri)).host, host)
    via = Via("UDP", host, port, {"branch": "z9hG4bK1"})
    assert str(via) == f"SIP/2.0/UDP {hostport};branch=z9hG4bK1"
    assert Via.parse(str(via)).port == port


def test_ipv6_source_stamps_unbracketed_received() -> None:
    via = stamp_via(Via.parse("SIP/2.0/UDP [::2]:5070;rport;branch=z9hG4bK1"), ("::1", 999))
    assert str(via) == "SIP/2.0/UDP [::2]:5070;rport=999;branch=z9hG4bK1;received=::1"
    assert Via.parse(str(via)).received == "::1"


@pytest.mark.parametrize(
    ("uri", "default", "target"),
    [
        ("sip:a@127.0.0.1:5070", "UDP", Target("UDP", "127.0.0.1", 5070)),
        ("sip:a@[::1]", "TCP", Target("TCP", "::1", 5060)),
        ("sip:a@127.0.0.1;transport=tcp", "UDP", Target("TCP", "127.0.0.1", 5060)),
        ("sips:a@127.0.0.1", "TCP", Target("TLS", "127.0.0.1", 5061)),
        ("sip:a@example.com;maddr=192.0.2.1", "UDP", Target("UDP", "192.0.2.1", 5060)),
        # RFC 6761 6.3: localhost names are the loopback address.
        ("sip:a@localhost:5070", "UDP", Target("UDP", "127.0.0.1", 5070)),
        ("sip:a@phone.localhost.", "UDP", Target("UDP", "127.0.0.1", 5060)),
    ],
)
def test_request_target(uri: str, default: str, target: Target) -> None:
    assert request_target(SipUri.parse(uri), default) == target


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("sip:df7jal23ls0d.invalid;transport=ws", "RFC 6761"),  # a WebRTC Contact
        ("sip:a@invalid", "RFC 6761"),
        ("sip:a@pc33.example.com", "host name"),
        ("tel:+15551234", "tel"),
    ],
)
def test_request_target_refuses_what_cannot_be_reached(uri: str, why: str) -> None:
    with pytest.raises(UnreachableTarget, match=why):
        request_target(SipUri.parse(uri), "UDP")
