"""The addresses the stack writes for each transport (RFC 3261 19.1, 26.2; RFC 7118 5)."""

from __future__ import annotations

import pytest
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.sip.target import UnreachableTarget
from sipfleet.node.stack import Advertised, SipStack
from sipfleet.node.transport import Peer


def stack(advertised: Advertised | None = None) -> SipStack:
    """A stack that is not listening, with the ports a started one would have."""
    out = SipStack("10.0.0.5", 5060, None, NodeMetrics(), RateLimiter(1, 1), advertised=advertised)  # type: ignore[arg-type]
    out.ports.update(udp=5060, tcp=5060, tls=5061, ws=8088, wss=8089)
    return out


async def test_local_uri_keeps_each_member_on_its_transport() -> None:
    s = stack()
    assert s.local_uri("c", Peer("udp", "10.0.0.9", 1)) == "sip:c@10.0.0.5:5060"
    assert s.local_uri("c", Peer("tcp", "10.0.0.9", 1)) == "sip:c@10.0.0.5:5060;transport=tcp"
    assert s.local_uri("c", Peer("tls", "10.0.0.9", 1, sips=True)) == "sips:c@10.0.0.5:5061"
    assert s.local_uri("c", Peer("tls", "10.0.0.9", 1)) == "sip:c@10.0.0.5:5061;transport=tls"
    assert s.local_uri("c", Peer("ws", "10.0.0.9", 1)) == "sip:c@10.0.0.5:8088;transport=ws"
    assert s.local_uri("c", Peer("wss", "10.0.0.9", 1)) == "sip:c@10.0.0.5:8089;transport=wss"
    assert s.sent_by(Peer("tls", "10.0.0.9", 1)) == "10.0.0.5:5061"


async def test_advertised_tls_port_is_written_for_tls_members() -> None:
    s = stack(Advertised("192.0.2.1", udp_port=30060, tls_port=30061))
    assert s.local_uri("c", Peer("tls", "10.0.0.9", 1, sips=True)) == "sips:c@192.0.2.1:30061"
    assert s.local_uri("c", Peer("tcp", "10.0.0.9", 1)) == "sip:c@192.0.2.1:5060;transport=tcp"


async def test_uri_for_a_tls_member_is_at_the_tls_port_sips_or_transport_tls() -> None:
    s = stack()
    tls = Peer("tls", "10.0.0.9", 1, sips=True)
    assert s.uri_for("sip:conf3-n1@10.0.0.7:5060", tls) == "sips:conf3-n1@10.0.0.7:5061"
    assert s.uri_for("sip:conf3-n1@10.0.0.7", tls) == "sips:conf3-n1@10.0.0.7:5061"
    plain = Peer("tls", "10.0.0.9", 1)  # dialled sip:...;transport=tls (baresip 1.0 does)
    expected = "sip:conf3-n1@10.0.0.7:5061;transport=tls"
    assert s.uri_for("sip:conf3-n1@10.0.0.7:5060", plain) == expected
    named = "sip:conf3-n1@10.0.0.7:5060;transport=udp"
    assert s.uri_for(named, tls) == named  # a transport the URI names is kept
    assert s.uri_for("tel:+1555", tls) == "tel:+1555"


async def test_uri_for_a_websocket_member_is_at_the_ws_port_with_its_transport() -> None:
    s = stack()  # ws 8088 and wss 8089 for SIP at 5060: other servers alike (RFC 7118 5)
    ws, wss = Peer("ws", "10.0.0.9", 1), Peer("wss", "10.0.0.9", 1)
    assert s.uri_for("sip:conf3-n1@10.0.0.7:5070", ws) == "sip:conf3-n1@10.0.0.7:8098;transport=ws"
    assert s.uri_for("sip:conf3-n1@10.0.0.7", wss) == "sip:conf3-n1@10.0.0.7:8089;transport=wss"
    named = "sip:conf3-n1@10.0.0.7:5060;transport=udp"
    assert s.uri_for(named, ws) == named
    del s.ports["wss"]  # a wss peer of a server not listening on wss (cannot happen): unchanged
    assert s.uri_for("sip:conf3-n1@10.0.0.7:5060", wss) == "sip:conf3-n1@10.0.0.7:5060"
    s.ports["ws"] = 70000  # a port the offset would take out of range: unchanged
    assert s.uri_for("sip:conf3-n1@10.0.0.7:5060", ws) == "sip:conf3-n1@10.0.0.7:5060"


async def test_targets_per_transport() -> None:
    s = stack()
    ws = Peer("ws", "10.0.0.9", 40000)
    # A WebSocket client is reached on its connection, whatever its Contact says.
    assert s.target_of("sip:alice@df7jal23ls0d.invalid;transport=ws", ws) is ws
    tcp = Peer("tcp", "10.0.0.9", 40000)
    with pytest.raises(UnreachableTarget):  # no certificate here: no TLS
        s.target_of("sips:alice@10.0.0.9:5061", tcp)
    assert s.target_of("sip:alice@10.0.0.9:5070", tcp) == Peer("tcp", "10.0.0.9", 5070)


async def test_server_peer_is_tcp_or_tls_at_the_same_offset() -> None:
    s = stack()
    target = Peer("udp", "10.0.0.7", 5070)
    assert s.server_peer(target) == Peer("tcp", "10.0.0.7", 5070)
    s.s2s_tls = True
    assert s.server_peer(target) == Peer("tls", "10.0.0.7", 5071)


async def test_a_sips_contact_makes_a_sips_peer() -> None:
    s = stack()
    s._tls = object()  # type: ignore[assignment]  # as if it had a certificate
    via = Peer("tls", "10.0.0.9", 40000)
    assert s.target_of("sips:alice@10.0.0.9:5071", via) == Peer("tls", "10.0.0.9", 5071, sips=True)
    assert s.target_of("sip:alice@10.0.0.9:5071;transport=tls", via) == Peer(
        "tls", "10.0.0.9", 5071
    )
