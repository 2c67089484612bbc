"""Pure parts of the transport glue: addresses, size routing, reply routing."""

from __future__ import annotations

import socket

from sipfleet.node.sip import Headers, SipRequest, SipResponse
from sipfleet.node.stack import reply_address, route_for_size, transport_failure
from sipfleet.node.transport import Peer, address_family, listen_hosts


def test_address_family_never_resolves_names() -> None:
    assert address_family("127.0.0.1") == socket.AF_INET
    assert address_family("::1") == socket.AF_INET6
    assert address_family("[::1]") is None  # socket form only
    assert address_family("localhost") is None


def test_listen_hosts_pairs_loopback_and_unspecified() -> None:
    assert listen_hosts("127.0.0.1") == ["127.0.0.1", "::1"]
    assert listen_hosts("::") == ["::", "0.0.0.0"]
    assert listen_hosts("10.1.2.3") == ["10.1.2.3"]


def test_route_for_size_marks_the_udp_fallback() -> None:
    udp = Peer("udp", "127.0.0.1", 5060)
    assert route_for_size(1300, udp) is udp
    assert route_for_size(1301, udp) == Peer("tcp", "127.0.0.1", 5060, udp_fallback=True)
    tcp = Peer("tcp", "127.0.0.1", 5060)
    assert route_for_size(5000, tcp) is tcp  # already reliable: nothing to fall back to


def test_transport_failure_is_a_503_for_the_tu() -> None:
    request = SipRequest("MESSAGE", "sip:a@h", Headers([("Call-ID", "c"), ("CSeq", "3 MESSAGE")]))
    response = transport_failure(request)
    assert response.status == 503 and response.cseq == (3, "MESSAGE")
    assert response.call_id == "c"


def _answer(via: str | None) -> SipResponse:
    headers = Headers([("Via", via)] if via else [])
    return SipResponse(400, "Bad Request", headers)


def test_reply_address_follows_the_via_or_the_source() -> None:
    source = Peer("udp", "127.0.0.1", 40000)
    assert reply_address(_answer("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"), source) == Peer(
        "udp", "127.0.0.1", 5070
    )
    assert reply_address(_answer("SIP/2.0/UDP h:5070;rport;branch=z9hG4bK1"), source) == source
    assert reply_address(_answer("garbage"), source) == source
    assert reply_address(_answer(None), source) == source
    tcp = Peer("tcp", "127.0.0.1", 40000)
    assert reply_address(_answer("SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK1"), tcp) == tcp


async def test_uri_for_adds_tcp_only_for_tcp_peers() -> None:
    from sipfleet.node.metrics import NodeMetrics
    from sipfleet.node.ratelimit import RateLimiter
    from sipfleet.node.stack import SipStack

    stack = SipStack("127.0.0.1", 0, None, NodeMetrics(), RateLimiter(1, 1))  # type: ignore[arg-type]
    target = "sip:conf3-n1@10.0.0.7:5060"
    assert stack.uri_for(target, Peer("udp", "127.0.0.1", 1)) == target
    tcp = Peer("tcp", "127.0.0.1", 1)
    assert stack.uri_for(target, tcp) == target + ";transport=tcp"
    assert stack.uri_for(target + ";transport=udp", tcp) == target + ";transport=udp"
    assert stack.uri_for("sip:a@[::1]:5070", tcp) == "sip:a@[::1]:5070;transport=tcp"


async def test_uri_for_leaves_what_it_cannot_read() -> None:
    from sipfleet.node.metrics import NodeMetrics
    from sipfleet.node.ratelimit import RateLimiter
    from sipfleet.node.stack import SipStack

    stack = SipStack("127.0.0.1", 0, None, NodeMetrics(), RateLimiter(1, 1))  # type: ignore[arg-type]
    tcp = Peer("tcp", "127.0.0.1", 1)
    assert stack.uri_for("tel:+15551234", tcp) == "tel:+15551234"
    assert stack.uri_for("not a uri", tcp) == "not a uri"
    assert stack.uri_for("sips:a@127.0.0.1", tcp) == "sips:a@127.0.0.1"
