"""One server in process, real sockets, hand-written SIP: the focus behaviours in detail."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sipfleet.node import takeover
from sipfleet.node.admin_types import RouteEntry, TransferRequest
from sipfleet.node.config import Config
from sipfleet.node.node import Node
from sipfleet.node.presentation import SenderDisplay
from sipfleet.node.sip import (
    NameAddr,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_message,
    unwrap_cpim,
)

GROUP = "sip:conf7@example.com"
HOST = "127.0.0.4"
# What a phone answers to the focus's offer in a 2xx (RFC 3264 5): G.711, inactive.
ANSWER = (
    b"v=0\r\no=ua 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=inactive\r\n"
)


class UA(asyncio.DatagramProtocol):
    """A minimal user agent on its own UDP socket (and optionally a TCP listener)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.call_id = f"{secrets.token_hex(6)}@{name}"
        self.tag = secrets.token_hex(4)
        self.cseq = 0
        self.peer_tag: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(parse_message(data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    @property
    def aor(self) -> str:
        return f"sip:{self.name}@example.org"

    def send(
        self,
        server: Node,
        method: str,
        uri: str,
        *,
        in_dialog: bool = True,
        body: bytes = b"",
        ctype: str = "",
        extra: str = "",
        call_id: str = "",
        branch: str = "",
        contact: str = "",
    ) -> None:
        self.cseq += 1
        self.branch = branch or f"z9hG4bK{secrets.token_hex(6)}"
        to_tag = f";tag={self.peer_tag}" if in_dialog and self.peer_tag else ""
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={self.branch}",
            f"From: <{self.aor}>;tag={self.tag}",
            f"To: <{GROUP}>{to_tag}",
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <{contact or f'sip:{self.name}@127.0.0.1:{self.port}'}>",
            "Max-Forwards: 70",
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines += [extra] if extra else []
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        assert self.transport is not None
        self.transport.sendto("\r\n".join(lines).encode() + body, (server.host, server.port))

    async def receive(self, timeout: float = 3.0) -> SipRequest | SipResponse:
        while True:
            message = await asyncio.wait_for(self.queue.get(), timeout)
            if not (isinstance(message, SipResponse) and message.status == 100):
                return message

    async def final(self) -> SipResponse:
        message = await self.receive()
        assert isinstance(message, SipResponse), message
        return message

    async def request(self) -> SipRequest:
        message = await self.receive()
        assert isinstance(message, SipRequest), message
        return message

    def answer(self, request: SipRequest, status: int = 200) -> None:
        h = request.headers
        lines = [
            f"SIP/2.0 {status} OK",
            *[f"Via: {v}" for v in h.get_all("Via")],
            f"From: {h.get('From')}",
            f"To: {h.get('To')}",
            f"Call-ID: {request.call_id}",
            f"CSeq: {h.get('CSeq')}",
            "Content-Length: 0\r\n\r\n",
        ]
        assert self.transport is not None
        via = request.via
        self.transport.sendto("\r\n".join(lines).encode(), (via.host, via.port or 5060))

    async def join(
        self, server: Node, body: bytes = b"", ctype: str = "", uri: str = ""
    ) -> SipResponse:
        self.send(server, "INVITE", uri or f"sip:conf7@{server.sent_by}", body=body, ctype=ctype)
        response = await self.final()
        if response.status == 200:
            self.peer_tag = response.to_tag
            self.cseq -= 1  # the ACK carries the INVITE's CSeq number
            answer, atype = (ANSWER, "application/sdp") if not body else (b"", "")
            self.send(server, "ACK", uri or f"sip:conf7@{server.sent_by}", body=answer, ctype=atype)
        return response


UAFactory = Callable[[str], Awaitable[UA]]


@pytest.fixture
async def server() -> AsyncIterator[Node]:
    node = Node(Config("main", "main", "example.com", HOST, 0, 0, "token"))
    await node.start()
    node.ensure_shard(GROUP, 2)
    yield node
    node.close()


@pytest.fixture
async def ua() -> AsyncIterator[UAFactory]:
    loop = asyncio.get_running_loop()
    made: list[UA] = []

    async def make(name: str) -> UA:
        _, agent = await loop.create_datagram_endpoint(
            lambda: UA(name), local_addr=("127.0.0.1", 0)
        )
        made.append(agent)
        return agent

    yield make
    for agent in made:
        assert agent.transport is not None
        agent.transport.close()


async def test_unknown_group_is_404(server: Node, ua: UAFactory) -> None:
    alice = await ua("alice")
    alice.send(server, "INVITE", f"sip:nothere@{server.sent_by}")
    assert (await alice.final()).status == 404


async def test_dialog_lifecycle_with_sdp(server: Node, ua: UAFactory) -> None:
    alice = await ua("alice")
    offer = (
        b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\n"
    )
    joined = await alice.join(server, offer, "application/sdp")
    assert joined.status == 200
    assert b"m=audio 9 RTP/AVP 0" in joined.body and b"a=inactive" in joined.body
    assert server.shards[GROUP].members and len(server.shards[GROUP].members) == 1
    alice.send(server, "INVITE", f"sip:conf7@{server.sent_by}")  # re-INVITE
    assert (await alice.final()).status == 200
    alice.cseq -= 1
    alice.send(server, "ACK", f"sip:conf7@{server.sent_by}")
    alice.send(server, "OPTIONS", f"sip:conf7@{server.sent_by}")  # in-dialog OPTIONS
    assert (await alice.final()).status == 200
    alice.send(server, "BYE", f"sip:conf7@{server.sent_by}")
    assert (await alice.final()).status == 200
    assert not server.shards[GROUP].members
    alice.send(server, "BYE", f"sip:conf7@{server.sent_by}")
    assert (await alice.final()).status == 481


async def test_no_room_anywhere_is_480(server: Node, ua: UAFactory) -> None:
    for name in ("a", "b"):
        assert (await (await ua(name)).join(server)).status == 200
    late = await ua("late")
    response = await late.join(server)
    assert response.status == 480
    assert response.headers.get("Retry-After") == "30"


async def test_message_rules(server: Node, ua: UAFactory) -> None:
    alice, bob, carol = [await ua(n) for n in ("alice", "bob", "carol")]
    await alice.join(server)
    await bob.join(server)
    # Out of dialog from a non-member: refused.
    carol.send(
        server,
        "MESSAGE",
        GROUP,
        in_dialog=False,
        body=b"let me in",
        ctype="text/plain",
        call_id="c-1",
    )
    assert (await carol.final()).status == 403
    # Out of dialog from a member's AOR: accepted and delivered to the others.
    alice.send(
        server, "MESSAGE", GROUP, in_dialog=False, body=b"hello", ctype="text/plain", call_id="a-2"
    )
    assert (await alice.final()).status == 200
    delivered = await bob.request()
    # The default sender display (auto) prefixes text for a phone without CPIM.
    assert delivered.method == "MESSAGE" and delivered.body == b"alice: hello"
    assert delivered.headers.get("X-Sipfleet-Sender") == f"<{alice.aor}>"
    assert delivered.call_id == bob.call_id and delivered.from_tag == bob.peer_tag
    bob.answer(delivered)
    with pytest.raises(TimeoutError):
        await alice.receive(timeout=0.3)  # the sender does not get its own message
    # In dialog, a large body: over TCP to Bob's contact (RFC 3261 18.1.1).
    received: asyncio.Queue[SipRequest] = asyncio.Queue()

    class Listener(asyncio.Protocol):
        framer = StreamFramer()

        def data_received(self, data: bytes) -> None:
            for message in self.framer.feed(data):
                assert isinstance(message, SipRequest)
                received.put_nowait(message)

    tcp = await asyncio.get_running_loop().create_server(Listener, "127.0.0.1", bob.port)
    try:
        alice.send(
            server, "MESSAGE", f"sip:conf7@{server.sent_by}", body=b"x" * 2000, ctype="text/plain"
        )
        assert (await alice.final()).status == 200
        big = await asyncio.wait_for(received.get(), 3)
        assert big.body == b"alice: " + b"x" * 2000 and big.via.transport == "TCP"
    finally:
        tcp.close()


async def test_subscribe_unknown_event_and_delete_shard(server: Node, ua: UAFactory) -> None:
    bob = await ua("bob")
    bob.send(server, "SUBSCRIBE", GROUP, in_dialog=False, extra="Event: presence", call_id="s-1")
    assert (await bob.final()).status == 489
    await bob.join(server)
    await server.delete_shard(GROUP)
    bye = await bob.request()
    assert bye.method == "BYE" and bye.call_id == bob.call_id
    assert GROUP not in server.shards


async def test_cancel_and_bad_contact(server: Node, ua: UAFactory) -> None:
    alice = await ua("alice")
    alice.send(server, "INVITE", f"sip:conf7@{server.sent_by}", contact="tel:+15551234")
    assert (await alice.final()).status == 400
    alice.send(server, "INVITE", f"sip:conf7@{server.sent_by}")
    invite_branch = alice.branch
    assert (await alice.final()).status == 200
    alice.cseq -= 1  # CANCEL carries the INVITE's CSeq number
    alice.send(
        server, "CANCEL", f"sip:conf7@{server.sent_by}", in_dialog=False, branch=invite_branch
    )
    assert (await alice.final()).status == 200  # matched, but the INVITE was answered
    alice.send(server, "CANCEL", f"sip:conf7@{server.sent_by}", in_dialog=False)
    assert (await alice.final()).status == 481


async def test_messages_during_a_transfer_are_never_lost(server: Node, ua: UAFactory) -> None:
    """Alice writes 50 messages while Bob is moved from `server` (root) to a second
    server with REFER. Bob must get every one; copies beyond one are bounded by the
    duplicate counter of the old server."""
    node = Node(Config("node", "node1", "example.com", "127.0.0.5", 0, 0, "token"))
    await node.start()
    try:
        target = node.ensure_shard(GROUP, 5)[0].uri
        source = server.shards[GROUP].uri
        table = {
            GROUP: (
                RouteEntry("main", source, "active", 0),
                RouteEntry("node1", str(target), "active", 5),
            )
        }
        server.put_routes(1, table)
        node.put_routes(1, table)
        alice, bob_old, bob_new = await ua("alice"), await ua("bob"), await ua("bob")
        await alice.join(server)
        await bob_old.join(server)
        got: list[bytes] = []

        async def bob(agent: UA) -> None:  # answers everything; follows the REFER
            while True:
                request = await agent.request()
                agent.answer(request, 202 if request.method == "REFER" else 200)
                if request.method == "MESSAGE":
                    got.append(request.body)
                elif request.method == "REFER":
                    refer_to = NameAddr.parse(request.headers.get("Refer-To") or "")
                    joined = await bob_new.join(node, uri=refer_to.uri)
                    assert joined.status == 200
                    phones.append(asyncio.create_task(bob(bob_new)))

        phones = [asyncio.create_task(bob(bob_old))]
        sent = [f"m{i}".encode() for i in range(50)]
        for i, body in enumerate(sent):
            if i == 10:
                job = server.start_transfer(
                    TransferRequest(GROUP, str(target), "refer", 50.0, members=(bob_old.aor,))
                )
            alice.send(
                server, "MESSAGE", f"sip:conf7@{server.sent_by}", body=body, ctype="text/plain"
            )
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)
        for phone in phones:
            assert not phone.done(), phone  # still answering, no assertion failed inside
            phone.cancel()
        assert server.transfer(job.id).moved == 1
        assert set(got) == {b"alice: " + body for body in sent}  # none lost
        duplicates = len(got) - len(sent)
        counted = server.metrics.registry.get_sample_value(
            "sipfleet_node_duplicate_deliveries_total"
        )
        assert counted is not None and duplicates <= counted
        assert [m.aor for m in node.shards[GROUP].members.values()] == [bob_new.aor]
        assert bob_old.aor not in server.shards[GROUP].by_aor
    finally:
        node.close()


async def test_refused_refer_fails_the_transfer(server: Node, ua: UAFactory) -> None:
    bob = await ua("bob")
    await bob.join(server)
    job = server.start_transfer(
        TransferRequest(GROUP, "sip:conf7-node9@127.0.0.9:5060", "refer", 10.0, count=1)
    )
    refer = await bob.request()
    assert refer.method == "REFER"
    assert refer.headers.get("Refer-To") == "<sip:conf7-node9@127.0.0.9:5060>"
    bob.answer(refer, 603)
    await asyncio.sleep(0.2)
    assert server.transfer(job.id).model_dump() | {"id": ""} == {
        "id": "",
        "group": GROUP,
        "target": "sip:conf7-node9@127.0.0.9:5060",
        "method": "refer",
        "rate": 10.0,
        "requested": 1,
        "moved": 0,
        "failed": 1,
        "state": "failed",
        "pending": 0,
    }
    assert [m.state for m in server.shards[GROUP].members.values()] == ["joined"]
    failed = server.metrics.registry.get_sample_value(
        "sipfleet_node_transfers_total", {"outcome": "failed"}
    )
    assert failed == 1


async def test_requests_follow_the_route_set(server: Node, ua: UAFactory) -> None:
    """Members behind a Record-Routing proxy get every in-dialog request through it
    (RFC 3261 12.1.1, 12.2.1.1): loose router -> Route headers, Request-URI the
    Contact; strict router -> Request-URI the router, the Contact last in Route. The
    focus's Contact says isfocus and its requests keep the dialog's identities
    (RFC 4579)."""
    alice, bob, carol, proxy = [await ua(n) for n in ("alice", "bob", "carol", "proxy")]
    loose = f"<sip:127.0.0.1:{proxy.port};lr>"
    alice.send(server, "INVITE", GROUP, extra=f"Record-Route: {loose}")
    joined = await alice.final()
    assert joined.status == 200 and joined.headers.get("Record-Route") == loose
    assert joined.contact is not None and "isfocus" in joined.contact.params
    alice.peer_tag = joined.to_tag
    strict = f"<sip:127.0.0.1:{proxy.port};maddr=127.0.0.1>"
    bob.send(server, "INVITE", GROUP, extra=f"Record-Route: {strict}")
    assert (await bob.final()).status == 200
    await carol.join(server, uri=GROUP)  # the shard has room for two: a redirect
    server.ensure_shard(GROUP, 3)
    assert (await carol.join(server)).status == 200
    carol.send(server, "MESSAGE", f"sip:conf7@{server.sent_by}", body=b"hi", ctype="text/plain")
    assert (await carol.final()).status == 200
    seen = {}
    for _ in range(2):
        request = await proxy.request()
        assert request.method == "MESSAGE"
        seen[request.call_id] = request
        proxy.answer(request)
    via_loose, via_strict = seen[alice.call_id], seen[bob.call_id]
    assert via_loose.uri == f"sip:alice@127.0.0.1:{alice.port}"
    assert via_loose.headers.get_list("Route") == [loose]
    assert via_loose.from_.uri == GROUP and via_loose.to.uri == alice.aor  # as created
    assert via_strict.uri == f"sip:127.0.0.1:{proxy.port};maddr=127.0.0.1"
    assert via_strict.headers.get_list("Route") == [f"<sip:bob@127.0.0.1:{bob.port}>"]
    with pytest.raises(TimeoutError):
        await alice.receive(timeout=0.3)  # nothing straight to the member
    # A conference subscription through the proxy: its NOTIFYs take the route too.
    alice.send(
        server,
        "SUBSCRIBE",
        GROUP,
        in_dialog=False,
        call_id="sub-1",
        extra=f"Event: conference\r\nRecord-Route: {loose}",
    )
    assert (await alice.final()).status == 200
    notify = await proxy.request()
    assert notify.method == "NOTIFY" and notify.headers.get_list("Route") == [loose]
    proxy.answer(notify)
    await server.delete_shard(GROUP)  # BYE to every member, through the proxy
    byes = {(await proxy.request()).method for _ in range(2)}
    assert byes == {"BYE"}


async def test_refer_to_server_falls_back_to_refer_without_replaces(
    server: Node, ua: UAFactory
) -> None:
    """RFC 3891 6: only a member that announced Supported: replaces is INVITEd with
    Replaces; the others are sent an in-dialog REFER to the target."""
    bob = await ua("bob")
    await bob.join(server)  # no Supported: replaces
    target = "sip:conf7-node9@127.0.0.9:5060"
    server.start_transfer(TransferRequest(GROUP, target, "refer-to-server", 10.0, count=1))
    refer = await bob.request()
    assert refer.method == "REFER" and refer.headers.get("Refer-To") == f"<{target}>"
    assert refer.contact is not None and "isfocus" in refer.contact.params
    bob.answer(refer, 603)


async def test_ringing_replaces_invite_is_cancelled(
    server: Node, ua: UAFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An INVITE with Replaces that only rings is CANCELled (RFC 3261 9.1), and the
    transfer fails with the member kept on the old server."""
    monkeypatch.setattr(takeover, "RING_TIMEOUT", 0.5)
    node = Node(Config("node", "node1", "example.com", "127.0.0.5", 0, 0, "token"))
    await node.start()
    try:
        target = node.ensure_shard(GROUP, 5)[0].uri
        table = {
            GROUP: (
                RouteEntry("main", server.shards[GROUP].uri, "active", 0),
                RouteEntry("node1", target, "active", 5),
            )
        }
        server.put_routes(1, table)
        node.put_routes(1, table)
        bob = await ua("bob")
        bob.send(server, "INVITE", f"sip:conf7@{server.sent_by}", extra="Supported: replaces")
        joined = await bob.final()
        assert joined.status == 200
        bob.peer_tag = joined.to_tag
        bob.cseq -= 1
        bob.send(server, "ACK", f"sip:conf7@{server.sent_by}")
        job = server.start_transfer(
            TransferRequest(GROUP, target, "refer-to-server", 10.0, count=1)
        )
        invite = await bob.request()
        assert invite.method == "INVITE" and invite.headers.get("Replaces")
        bob.answer(invite, 180)
        cancel = await bob.request()
        assert cancel.method == "CANCEL" and cancel.via.branch == invite.via.branch
        bob.answer(cancel)
        bob.answer(invite, 487)
        ack = await bob.request()
        assert ack.method == "ACK"
        for _ in range(50):
            if server.transfer(job.id).state != "running":
                break
            await asyncio.sleep(0.05)
        assert server.transfer(job.id).failed == 1
        assert [m.aor for m in server.shards[GROUP].members.values()] == [bob.aor]
    finally:
        node.close()


# ---- SDP offer/answer (RFC 3264) and how the sender is shown --------------------------


async def test_dynamic_first_format_is_answered_with_its_rtpmap(
    server: Node, ua: UAFactory
) -> None:
    """The issue's input: the answer to `96 0 8` with opus as 96 must define 96 (RFC 3264 6.1)."""
    alice = await ua("alice")
    offer = (
        b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 96 0 8\r\na=rtpmap:96 opus/48000/2\r\n"
    )
    joined = await alice.join(server, offer, "application/sdp")
    assert joined.status == 200 and joined.headers.get("Content-Type") == "application/sdp"
    assert b"m=audio 9 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\na=inactive\r\n" in joined.body
    origin = joined.body.split(b"\r\n")[1]
    alice.send(server, "INVITE", f"sip:conf7@{server.sent_by}", body=offer, ctype="application/sdp")
    again = await alice.final()  # the same offer again: same o= session id and version
    assert again.status == 200 and again.body.split(b"\r\n")[1] == origin


async def test_late_offer_gets_an_offer_and_the_ack_answers(server: Node, ua: UAFactory) -> None:
    alice = await ua("alice")
    joined = await alice.join(server)  # no SDP: the 200 offers, the ACK answers (RFC 3264 5)
    assert joined.status == 200 and joined.headers.get("Content-Type") == "application/sdp"
    assert b"m=audio 9 RTP/AVP 0 8 101" in joined.body and b"a=inactive" in joined.body
    (member,) = server.shards[GROUP].members.values()
    for _ in range(50):
        if member.media.pending is None:
            break
        await asyncio.sleep(0.01)
    assert member.media.pending is None  # the ACK's answer was taken


async def test_bad_bodies_in_invite(server: Node, ua: UAFactory) -> None:
    alice = await ua("alice")
    bad = b"v=0\r\ns=-\r\nt=0 0\r\n"  # no o= line
    assert (await alice.join(server, bad, "application/sdp")).status == 488
    assert (await alice.join(server, b"hello", "text/plain")).status == 415
    assert not server.shards[GROUP].members


async def _deliver(server: Node, sender: UA, receiver: UA, text: bytes) -> SipRequest:
    sender.send(server, "MESSAGE", f"sip:conf7@{server.sent_by}", body=text, ctype="text/plain")
    assert (await sender.final()).status == 200
    delivered = await receiver.request()
    receiver.answer(delivered)
    assert delivered.headers.get("X-Sipfleet-Sender") == f"<{sender.aor}>"
    return delivered


async def test_a_member_accepting_cpim_gets_cpim(server: Node, ua: UAFactory) -> None:
    alice, bob = await ua("alice"), await ua("bob")
    await alice.join(server)
    bob.send(
        server,
        "INVITE",
        f"sip:conf7@{server.sent_by}",
        extra="Accept: application/sdp, message/cpim, text/plain",
    )
    joined = await bob.final()
    assert joined.status == 200
    bob.peer_tag, bob.cseq = joined.to_tag, bob.cseq - 1
    bob.send(server, "ACK", f"sip:conf7@{server.sent_by}", body=ANSWER, ctype="application/sdp")
    delivered = await _deliver(server, alice, bob, b"hello")
    assert delivered.headers.get("Content-Type") == "message/cpim"
    cpim = unwrap_cpim(delivered.body)
    # RFC 3862 3.3: a quoted Formal-name is followed directly by "<"
    assert cpim.from_ == f'"alice"<{alice.aor}>' and cpim.to == f"<{GROUP}>"
    assert (cpim.content_type, cpim.body) == ("text/plain", b"hello")


@pytest.mark.parametrize("mode", list(SenderDisplay))
async def test_sender_display_modes(mode: SenderDisplay, ua: UAFactory) -> None:
    node = Node(Config("main", "main", "example.com", HOST, 0, 0, "token", sender_display=mode))
    await node.start()
    try:
        node.ensure_shard(GROUP, 2)
        alice, bob = await ua("alice"), await ua("bob")
        await alice.join(node)
        await bob.join(node)
        delivered = await _deliver(node, alice, bob, b"hi")
        from_ = NameAddr.parse(delivered.headers.get("From") or "")
        # In the dialog, From keeps the dialog's URI (the INVITE's To) and tag
        # (RFC 3261 12.2.1.1, RFC 4579).
        assert from_.uri == GROUP and delivered.from_tag == bob.peer_tag
        expected = {
            SenderDisplay.AUTO: (None, "text/plain", b"alice: hi"),
            SenderDisplay.PREFIX: (None, "text/plain", b"alice: hi"),
            SenderDisplay.DISPLAY_NAME: ("alice", "text/plain", b"hi"),
            SenderDisplay.CPIM: (None, "message/cpim", None),
        }[mode]
        assert (from_.display or None, delivered.headers.get("Content-Type")) == expected[:2]
        if expected[2] is None:
            assert unwrap_cpim(delivered.body).body == b"hi"
        else:
            assert delivered.body == expected[2]
    finally:
        node.close()


async def test_a_conference_sender_display_overrides_the_servers(ua: UAFactory) -> None:
    """The shard's sender display (SipConference.spec.senderDisplay) wins over the
    server's --sender-display; a shard created without one follows the server."""
    cpim = SenderDisplay.CPIM
    node = Node(Config("main", "main", "example.com", HOST, 0, 0, "token", sender_display=cpim))
    await node.start()
    try:
        node.ensure_shard(GROUP, 2, sender_display=SenderDisplay.DISPLAY_NAME)
        alice, bob = await ua("alice"), await ua("bob")
        await alice.join(node)
        await bob.join(node)
        delivered = await _deliver(node, alice, bob, b"hi")
        from_ = NameAddr.parse(delivered.headers.get("From") or "")
        assert from_.display == "alice" and from_.uri == GROUP
        assert (delivered.headers.get("Content-Type"), delivered.body) == ("text/plain", b"hi")
        node.ensure_shard(GROUP, 2)  # a resize without a mode keeps the conference's
        assert node.shards[GROUP].sender_display is SenderDisplay.DISPLAY_NAME
    finally:
        node.close()


async def test_target_refresh_moves_delivery_and_bad_ones_are_refused(
    server: Node, ua: UAFactory
) -> None:
    """A re-INVITE's Contact becomes the remote target (RFC 3261 12.2.2); one this
    server cannot send to is refused 403 and the old target kept; a request whose
    CSeq is not above the last one gets 500."""
    alice, bob, moved = await ua("alice"), await ua("bob"), await ua("bob2")
    await alice.join(server)
    await bob.join(server)
    uri = f"sip:conf7@{server.sent_by}"
    bob.send(server, "INVITE", uri, contact="sip:bob@phone.invalid")
    assert (await bob.final()).status == 403
    bob.send(server, "INVITE", uri, contact=f"sip:bob@127.0.0.1:{moved.port}")
    assert (await bob.final()).status == 200
    bob.cseq -= 1
    bob.send(server, "ACK", uri)
    saved, bob.cseq = bob.cseq, 0
    bob.send(server, "MESSAGE", uri, body=b"stale", ctype="text/plain")  # CSeq 1 again
    assert (await bob.final()).status == 500  # out of order (12.2.2)
    bob.cseq = saved
    alice.send(server, "MESSAGE", uri, body=b"hi", ctype="text/plain")
    assert (await alice.final()).status == 200
    delivered = await moved.request()
    assert delivered.method == "MESSAGE" and delivered.call_id == bob.call_id
    moved.answer(delivered)


async def test_a_bad_answer_in_the_ack_keeps_the_member(server: Node, ua: UAFactory) -> None:
    """The focus has no media to lose: a broken answer is logged, the member stays."""
    alice = await ua("alice")
    alice.send(server, "INVITE", f"sip:conf7@{server.sent_by}")
    joined = await alice.final()
    assert joined.status == 200 and b"m=audio 9 RTP/AVP 0 8 101" in joined.body
    alice.peer_tag, alice.cseq = joined.to_tag, alice.cseq - 1
    video = ANSWER.replace(b"m=audio", b"m=video")  # not an answer to an audio offer
    alice.send(server, "ACK", f"sip:conf7@{server.sent_by}", body=video, ctype="application/sdp")
    (member,) = server.shards[GROUP].members.values()
    for _ in range(50):
        if member.media.pending is None:
            break
        await asyncio.sleep(0.01)
    assert member.media.pending is None  # the offer is settled
    alice.send(server, "OPTIONS", f"sip:conf7@{server.sent_by}")
    assert (await alice.final()).status == 200
    assert list(server.shards[GROUP].members.values()) == [member]


async def test_accept_in_a_message_out_of_dialog_switches_to_cpim(
    server: Node, ua: UAFactory
) -> None:
    """baresip and linphone chat out of dialog, from the AOR that joined: their
    MESSAGE's Accept tells the focus what they render, as an INVITE's would."""
    alice, bob = await ua("alice"), await ua("bob")
    await alice.join(server)
    await bob.join(server)
    assert (await _deliver(server, alice, bob, b"one")).body == b"alice: one"
    bob.send(
        server,
        "MESSAGE",
        GROUP,
        in_dialog=False,
        body=b"I read CPIM",
        ctype="text/plain",
        extra="Accept: message/cpim, text/plain",
        call_id="b-2",
    )
    assert (await bob.final()).status == 200
    alice.answer(await alice.request())
    delivered = await _deliver(server, alice, bob, b"two")
    assert delivered.headers.get("Content-Type") == "message/cpim"
    assert unwrap_cpim(delivered.body).body == b"two"
