"""Listen address versus advertised address: a server listening on 127.0.0.1
that advertises another address (as behind a NodePort, a host port or a Service)
writes only the advertised one into what it sends members, and keeps its own
server-to-server requests carry the listen address (docs/transport.md, issue 10).

What this proves: the bytes on the wire. Every member here still reaches the
server at its listen address; the advertised address (TEST-NET-1, RFC 5737) is
never listened on, so the tests show what is written, not that a NAT in front
would carry the traffic (that is the real-cluster e2e's job).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sipfleet.node.config import Config
from sipfleet.node.node import Node
from sipfleet.node.routes import RouteEntry
from sipfleet.node.sdp import parse_sdp
from sipfleet.node.sip import SipRequest, SipResponse
from sipfleet.node.transport import Peer
from test_node_members_transport import GROUP, Member, udp_member

ADV = "192.0.2.10"
UDP_PORT, TCP_PORT = 30060, 30061


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    config = Config(
        "main",
        "main",
        "example.com",
        "127.0.0.1",
        0,
        0,
        "token",
        advertise_host=ADV,
        advertise_udp_port=UDP_PORT,
        advertise_tcp_port=TCP_PORT,
    )
    server = Node(config)
    await server.start()
    server.ensure_shard(GROUP, 10)
    yield server
    server.close()


def assert_advertised(node: Node, wire: bytes) -> None:
    """No trace of where the server listens; the advertised address is there."""
    assert f"127.0.0.1:{node.port}".encode() not in wire
    assert ADV.encode() in wire


async def test_shard_uri_and_admin_state_carry_the_advertised_address(node: Node) -> None:
    assert node.shards[GROUP].uri == f"sip:conf9-main@{ADV}:{UDP_PORT}"
    sip = node.state().model_dump()["sip"]
    assert sip["host"] == "127.0.0.1" and sip["port"] == node.port
    assert sip["advertised"] == {"host": ADV, "udp_port": UDP_PORT, "tcp_port": TCP_PORT}


async def test_udp_member_sees_only_the_advertised_address(node: Node) -> None:
    """200's Contact, the SDP's c= and o= (RFC 4566 5.2, 5.7), and the Via
    sent-by and From of a group message fanned out to the member."""
    server = ("127.0.0.1", node.port)
    alice, bob = await udp_member("alice"), await udp_member("bob")
    ok = await alice.join(server)
    assert ok.status == 200 and ok.contact is not None
    assert ok.contact.uri == f"sip:conf9-main@{ADV}:{UDP_PORT}"
    sdp = parse_sdp(ok.body)
    assert sdp.origin.split()[3:] == ["IN", "IP4", ADV]
    assert sdp.connection == f"IN IP4 {ADV}"
    assert_advertised(node, ok.to_bytes())
    assert (await bob.join(server)).status == 200
    bob.send(server, "MESSAGE", ok.contact.uri, body=b"hello")
    got = await alice.next()
    while isinstance(got, SipResponse):
        got = await alice.next()
    assert isinstance(got, SipRequest) and got.method == "MESSAGE"
    assert got.via.sent_by == f"{ADV}:{UDP_PORT}"
    assert_advertised(node, got.to_bytes())
    for m in (alice, bob):
        m.transport.close()  # type: ignore[union-attr]


async def test_tcp_member_gets_the_advertised_tcp_port(node: Node) -> None:
    loop = asyncio.get_running_loop()
    _, tom = await loop.create_connection(lambda: Member("tom"), "127.0.0.1", node.port)
    tom.tcp = True
    ok = await tom.join(("127.0.0.1", node.port))
    assert ok.status == 200 and ok.contact is not None
    assert ok.contact.uri == f"sip:conf9-main@{ADV}:{TCP_PORT};transport=tcp"
    assert_advertised(node, ok.to_bytes())
    tom.transport.close()  # type: ignore[union-attr]


async def test_a_member_at_a_fleet_servers_address_still_gets_the_advertised_one(
    node: Node,
) -> None:
    """kube-proxy may SNAT a member to a node address that is also a server's
    advertised host: what the server writes must not depend on the source."""
    peer_uri = "sip:conf9-n1@127.0.0.2:5070"
    entries = (
        RouteEntry("main", node.shards[GROUP].uri, "active", 10),
        RouteEntry("n1", peer_uri, "active", 10),
    )
    node.put_routes(1, {GROUP: entries})
    assert "127.0.0.2" in node.stack.exempt
    member = Peer("tcp", "127.0.0.2", 40000)
    assert node.stack.sent_by(member) == f"{ADV}:{TCP_PORT}"
    assert node.stack.local_uri("x", member) == f"sip:x@{ADV}:{TCP_PORT};transport=tcp"
    assert node.stack.local_host(Peer("udp", "::1", 40000)) == ADV


async def test_redirect_names_the_target_servers_advertised_uri(node: Node) -> None:
    """The 302's Contact is the other server's shard URI, which that server made
    from its own advertised address; over TCP it gains ;transport=tcp."""
    node.ensure_shard(GROUP, 0)
    other = "sip:conf9-n1@198.51.100.7:31000"
    node.put_routes(
        1,
        {
            GROUP: (
                RouteEntry("main", node.shards[GROUP].uri, "active", 0),
                RouteEntry("n1", other, "active", 5),
            )
        },
    )
    alice = await udp_member("alice")
    response = await alice.join(("127.0.0.1", node.port))
    assert response.status == 302 and response.contact is not None
    assert response.contact.uri == other
    alice.transport.close()  # type: ignore[union-attr]


async def test_an_advertised_port_alone_keeps_the_listen_host() -> None:
    """A host port other than the SIP port: only the port changes."""
    config = Config(
        "node", "n1", "example.com", "127.0.0.1", 0, 0, "token", advertise_udp_port=31000
    )
    server = Node(config)
    await server.start()
    try:
        server.ensure_shard(GROUP, 10)
        assert server.shards[GROUP].uri == "sip:conf9-n1@127.0.0.1:31000"
        member = Peer("udp", "127.0.0.9", 5060)
        assert server.stack.sent_by(member) == "127.0.0.1:31000"
        tcp = Peer("tcp", "127.0.0.9", 5060)  # no TCP port advertised: the listening one
        assert server.stack.local_uri("x", tcp) == f"sip:x@127.0.0.1:{server.port};transport=tcp"
        assert server.state().model_dump()["sip"]["advertised"] == {
            "host": "127.0.0.1",
            "udp_port": 31000,
            "tcp_port": server.port,
        }
    finally:
        server.close()
