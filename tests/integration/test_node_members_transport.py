"""A server in process, members on real loopback sockets: joins over TCP and IPv6,
host-name Contacts, and a large message to a member with no TCP listener
(RFC 3261 18, RFC 3263, RFC 5118)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sipfleet.node.config import Config
from sipfleet.node.node import Node
from sipfleet.node.routes import RouteEntry
from sipfleet.node.sip import SipRequest, SipResponse, StreamFramer, Timers, parse_message

GROUP = "sip:conf9@example.com"
SCENARIOS = Path(__file__).parent / "scenarios"


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
    for text in (b"anyone?", b"hello?"):  # two deliveries time out: one removal
        alice.send(server, "MESSAGE", f"sip:conf9-main@127.0.0.1:{node.port}", body=text)
        await alice.next()
    methods = []
    while "BYE" not in methods:  # retransmissions of the MESSAGE, then the BYE
        request = await frank.next(timeout=5.0)
        assert isinstance(request, SipRequest)
        methods.append(request.method)
    assert set(methods) == {"MESSAGE", "BYE"} and methods.count("MESSAGE") > 1
    await asyncio.sleep(0.5)  # the second delivery's Timer F
    assert metric(node, "sipfleet_node_members_removed_total", reason="delivery_timeout") == 1
    assert metric(node, "sipfleet_node_delivery_failures_total") == 2
    while not frank.got.empty():  # nothing after the BYE but its retransmissions
        late = frank.got.get_nowait()
        assert isinstance(late, SipRequest) and late.method in ("MESSAGE", "BYE")
    assert methods.count("BYE") == 1
    assert len(node.shards[GROUP].members) == 1
    # A member lost: the shard's state says so, for the operator's MembersDropped Event.
    (state,) = node.state().shards
    assert state.dropped == 1
    for m in (alice, frank):
        m.transport.close()  # type: ignore[union-attr]


SIPP = shutil.which("sipp")


@pytest.mark.skipif(SIPP is None, reason="sipp is not installed (scripts/install-system-deps.sh)")
@pytest.mark.parametrize(
    ("local", "transport"), [("::1", "u1"), ("127.0.0.1", "t1"), ("::1", "t1")]
)
async def test_sipp_joins_acks_and_leaves(
    node: Node, tmp_path: Path, local: str, transport: str
) -> None:
    """A peer nobody here wrote (sipp) ACKs and BYEs at the Contact of our 200:
    bracketed for IPv6 (RFC 3261 25.1; baresip never ACKed an unbracketed one),
    `;transport=tcp` over TCP."""
    assert SIPP is not None
    target = f"[{local}]:{node.port}" if ":" in local else f"{local}:{node.port}"
    proc = await asyncio.create_subprocess_exec(
        SIPP, target, "-sf", str(SCENARIOS / "join_ack_bye.xml"), "-s", "conf9",
        "-i", local, "-p", "0", "-t", transport, "-m", "1", "-nostdin",
        "-timeout", "15s", "-timeout_error", "-trace_err", "-error_file",
        str(tmp_path / "sipp.errors"), "-trace_msg", "-message_file", str(tmp_path / "sipp.msg"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    for _ in range(100):  # joined within 10 s
        if node.shards[GROUP].members:
            break
        await asyncio.sleep(0.1)
    members = list(node.shards[GROUP].members.values())
    assert members, "sipp never joined"
    member = members[0]
    assert member.peer.transport == ("tcp" if transport == "t1" else "udp")
    code = await asyncio.wait_for(proc.wait(), 30)
    messages = (tmp_path / "sipp.msg").read_text(errors="replace")
    assert code == 0, messages[-3000:]
    contact = f"sip:conf9-main@{target}" + (";transport=tcp" if transport == "t1" else "")
    assert f"ACK {contact} SIP/2.0" in messages
    assert not node.shards[GROUP].members  # left by BYE
    # The 200 was ACKed: never retransmitted, the member never dropped as unacked.
    assert metric(node, "sipfleet_node_retransmissions_total") == 0
    assert metric(node, "sipfleet_node_members_removed_total", reason="bye_received") == 1


async def test_redirect_for_a_tcp_member_names_tcp(node: Node) -> None:
    """The 302's Contact for a member on TCP says ;transport=tcp, so a TCP-only
    phone can follow it (RFC 3261 19.1.1); over UDP it is unchanged."""
    node.ensure_shard(GROUP, 0)  # full here
    other = "sip:conf9-n1@127.0.0.1:5999"
    node.put_routes(
        1,
        {
            GROUP: (
                RouteEntry("main", f"sip:conf9-main@127.0.0.1:{node.port}", "active", 0),
                RouteEntry("n1", other, "active", 5),
            )
        },
    )
    loop = asyncio.get_running_loop()
    _, tcp = await loop.create_connection(lambda: Member("tom"), "127.0.0.1", node.port)
    tcp.tcp = True
    response = await tcp.join(("127.0.0.1", node.port))
    assert response.status == 302 and response.contact is not None
    assert response.contact.uri == other + ";transport=tcp"
    udp = await udp_member("uma")
    response = await udp.join(("127.0.0.1", node.port))
    assert response.status == 302 and response.contact is not None
    assert response.contact.uri == other
    for m in (tcp, udp):
        m.transport.close()  # type: ignore[union-attr]
