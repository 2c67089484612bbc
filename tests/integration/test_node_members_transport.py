"""A server in process, members on real loopback sockets: joins over TCP and IPv6,
host-name Contacts, and a large message to a member with no TCP listener
(RFC 3261 18, RFC 3263, RFC 5118)."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator

import pytest
from sipfleet.node.config import Config
from sipfleet.node.node import Node
from sipfleet.node.sip import SipRequest, SipResponse, StreamFramer, Timers, parse_message

GROUP = "sip:conf9@example.com"


class Member(asyncio.DatagramProtocol, asyncio.Protocol):
    """A user agent on UDP (either family) or on one TCP connection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.transport: asyncio.BaseTransport | None = None
        self.framer = StreamFramer()
        self.call_id = f"{secrets.token_hex(6)}@{name}"
        self.tag = secrets.token_hex(4)
        self.cseq = 0
        self.peer_tag: str | None = None
        self.tcp = False

    # UDP
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait(parse_message(data))

    # TCP
    def data_received(self, data: bytes) -> None:
        for message in self.framer.feed(data):
            self.got.put_nowait(message)

    @property
    def host(self) -> str:
        assert self.transport is not None
        return str(self.transport.get_extra_info("sockname")[0])

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def send(
        self,
        server: tuple[str, int],
        method: str,
        uri: str,
        *,
        contact: str = "",
        body: bytes = b"",
    ) -> None:
        self.cseq += 1
        proto = "TCP" if self.tcp else "UDP"
        to_tag = f";tag={self.peer_tag}" if self.peer_tag else ""
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{proto} {self.hostport};branch=z9hG4bK{secrets.token_hex(6)};rport",
            f"From: <sip:{self.name}@example.org>;tag={self.tag}",
            f"To: <{GROUP}>{to_tag}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <{contact or f'sip:{self.name}@{self.hostport}'}>",
            "Max-Forwards: 70",
        ]
        if body:
            lines.append("Content-Type: text/plain")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        data = "\r\n".join(lines).encode() + body
        if self.tcp:
            self.transport.write(data)  # type: ignore[union-attr]
        else:
            self.transport.sendto(data, server)  # type: ignore[union-attr]

    def answer(self, request: SipRequest, server: tuple[str, int]) -> None:
        h = request.headers
        lines = ["SIP/2.0 200 OK", *[f"Via: {v}" for v in h.get_all("Via")]]
        lines += [f"{n}: {h.get(n)}" for n in ("From", "To", "Call-ID", "CSeq")]
        data = "\r\n".join([*lines, "Content-Length: 0\r\n\r\n"]).encode()
        if self.tcp:
            self.transport.write(data)  # type: ignore[union-attr]
        else:
            self.transport.sendto(data, server)  # type: ignore[union-attr]

    async def next(self, timeout: float = 3.0) -> SipRequest | SipResponse:
        while True:
            message = await asyncio.wait_for(self.got.get(), timeout)
            if not (isinstance(message, SipResponse) and message.status == 100):
                return message

    async def join(self, server: tuple[str, int], contact: str = "") -> SipResponse:
        uri = f"sip:conf9@{server[0] if ':' not in server[0] else f'[{server[0]}]'}:{server[1]}"
        self.send(server, "INVITE", uri, contact=contact)
        response = await self.next()
        assert isinstance(response, SipResponse)
        if response.status == 200:
            self.peer_tag = response.to_tag
            assert response.contact is not None
            self.cseq -= 1
            self.send(server, "ACK", response.contact.uri)
        return response


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    server = Node(Config("main", "main", "example.com", "127.0.0.1", 0, 0, "token"))
    await server.start()
    server.ensure_shard(GROUP, 10)
    yield server
    server.close()


async def udp_member(name: str, host: str = "127.0.0.1") -> Member:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    loop = asyncio.get_running_loop()
    _, member = await loop.create_datagram_endpoint(
        lambda: Member(name), local_addr=(host, 0), family=family
    )
    return member


def metric(node: Node, name: str, **labels: str) -> float:
    value = node.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_member_over_tcp_gets_a_tcp_contact(node: Node) -> None:
    loop = asyncio.get_running_loop()
    _, bob = await loop.create_connection(lambda: Member("bob"), "127.0.0.1", node.port)
    bob.tcp = True
    response = await bob.join(("127.0.0.1", node.port))
    assert response.status == 200
    assert response.contact is not None
    contact = response.contact.sip_uri
    assert contact.params.get("transport") == "tcp"  # RFC 3261 12.1.1, 19.1.1
    assert (contact.host, contact.port) == ("127.0.0.1", node.port)
    # The ACK went to that Contact over TCP: no 2xx retransmission, no timeout.
    with pytest.raises(TimeoutError):
        await bob.next(timeout=1.2)
    assert len(node.shards[GROUP].members) == 1
    bob.transport.close()  # type: ignore[union-attr]


async def test_ipv6_member_joins_and_gets_messages(node: Node) -> None:
    alice, bob = await udp_member("alice"), await udp_member("bob", "::1")
    v4, v6 = ("127.0.0.1", node.port), ("::1", node.port)
    assert (await alice.join(v4)).status == 200
    response = await bob.join(v6)
    assert response.status == 200 and response.contact is not None
    # RFC 3261 25.1 / RFC 5118: the focus URI is an IPv6 reference.
    assert response.contact.uri == f"sip:conf9-main@[::1]:{node.port}"
    assert response.via.received == "::1"
    alice.send(v4, "MESSAGE", f"sip:conf9-main@127.0.0.1:{node.port}", body=b"hi v6")
    assert isinstance(await alice.next(), SipResponse)
    delivered = await bob.next()
    assert isinstance(delivered, SipRequest) and delivered.body.endswith(b"hi v6")
    assert delivered.via.sent_by == f"[::1]:{node.port}"
    bob.answer(delivered, v6)
    with pytest.raises(TimeoutError):  # the 200 to the INVITE was ACKed: no retransmission
        await bob.next(timeout=1.0)
    for m in (alice, bob):
        m.transport.close()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "contact",
    ["sip:df7jal23ls0d.invalid;transport=ws", "sip:carol@phone.example.com:5060"],
)
async def test_unresolvable_contact_is_refused_at_join(node: Node, contact: str) -> None:
    carol = await udp_member("carol")
    response = await carol.join(("127.0.0.1", node.port), contact=contact)
    assert response.status == 403
    assert "Contact" in (response.headers.get("Warning") or "")
    assert len(node.shards[GROUP].members) == 0
    carol.transport.close()  # type: ignore[union-attr]


async def test_localhost_contact_is_the_loopback_address(node: Node) -> None:
    alice, dave = await udp_member("alice"), await udp_member("dave")
    server = ("127.0.0.1", node.port)
    assert (await alice.join(server)).status == 200
    assert (await dave.join(server, contact=f"sip:dave@localhost:{dave.port}")).status == 200
    alice.send(server, "MESSAGE", f"sip:conf9-main@127.0.0.1:{node.port}", body=b"to localhost")
    await alice.next()
    delivered = await dave.next()
    assert isinstance(delivered, SipRequest) and delivered.body.endswith(b"to localhost")
    for m in (alice, dave):
        m.transport.close()  # type: ignore[union-attr]


async def test_large_message_reaches_a_udp_only_member(node: Node) -> None:
    alice, erin = await udp_member("alice"), await udp_member("erin")  # no TCP listeners
    server = ("127.0.0.1", node.port)
    assert (await alice.join(server)).status == 200
    assert (await erin.join(server)).status == 200
    body = b"z" * 1500
    alice.send(server, "MESSAGE", f"sip:conf9-main@127.0.0.1:{node.port}", body=body)
    await alice.next()
    delivered = await erin.next()
    assert isinstance(delivered, SipRequest) and delivered.body.endswith(body)
    assert delivered.via.transport == "UDP"
    erin.answer(delivered, server)
    await asyncio.sleep(0.3)
    assert metric(node, "sipfleet_node_udp_fallbacks_total") == 1
    assert metric(node, "sipfleet_node_delivery_failures_total") == 0
    assert len(node.shards[GROUP].members) == 2  # nobody removed
    for m in (alice, erin):
        m.transport.close()  # type: ignore[union-attr]


async def test_member_that_never_answers_is_removed_with_a_bye_and_counted(node: Node) -> None:
    """Issue 8 item 3: no member is removed silently. Timer F (64*T1, here 3.2 s)
    ends the delivery with a 408; the member is sent a BYE and the removal counted."""
    node.stack.layer.timers = Timers(t1=0.05, t2=0.4, t4=0.5)
    alice, frank = await udp_member("alice"), await udp_member("frank")
    server = ("127.0.0.1", node.port)
    assert (await alice.join(server)).status == 200
    assert (await frank.join(server)).status == 200
    alice.send(server, "MESSAGE", f"sip:conf9-main@127.0.0.1:{node.port}", body=b"anyone?")
    await alice.next()
    methods = []
    while "BYE" not in methods:  # retransmissions of the MESSAGE, then the BYE
        request = await frank.next(timeout=5.0)
        assert isinstance(request, SipRequest)
        methods.append(request.method)
    assert set(methods) == {"MESSAGE", "BYE"} and methods.count("MESSAGE") > 1
    assert metric(node, "sipfleet_node_members_removed_total", reason="delivery_timeout") == 1
    assert metric(node, "sipfleet_node_delivery_failures_total") == 1
    assert len(node.shards[GROUP].members) == 1
    for m in (alice, frank):
        m.transport.close()  # type: ignore[union-attr]
