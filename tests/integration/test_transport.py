"""The SIP stack on real loopback sockets: send failures stay with their own
transaction (RFC 3261 17.1.4), size-driven TCP falls back to UDP (18.1.1),
responses follow the Via (18.2.2, RFC 3581), IPv6, and bounded TCP."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator

import pytest
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.sip import (
    Headers,
    SipRequest,
    SipResponse,
    StreamFramer,
    new_branch,
    parse_message,
)
from sipfleet.node.stack import RequestContext, SipStack, route_for_size
from sipfleet.node.transport import Peer, SendError, TcpLimits, UdpEndpoint

HOST = "127.0.0.5"


class App:
    """Answers every request 200 and records what reached it."""

    def __init__(self) -> None:
        self.requests: list[SipRequest] = []
        self.unacked: list[SipRequest] = []

    def handle_request(self, ctx: RequestContext) -> None:
        self.requests.append(ctx.request)
        ctx.respond(200)

    def handle_ack(self, request: SipRequest) -> None:
        pass

    def handle_unacked(self, request: SipRequest) -> None:
        self.unacked.append(request)


class Sink(asyncio.DatagramProtocol):
    """A UDP peer that records what it receives (and answers only if told to)."""

    def __init__(self) -> None:
        self.got: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait(parse_message(data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    async def next(self, timeout: float = 3.0) -> SipRequest | SipResponse:
        return await asyncio.wait_for(self.got.get(), timeout)


async def sink(host: str = "127.0.0.1") -> Sink:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _, proto = await loop.create_datagram_endpoint(Sink, local_addr=(host, 0), family=family)
    return proto


def message_to(stack: SipStack, peer: Peer, body: bytes = b"hi") -> SipRequest:
    via_host = f"[{stack.host}]" if ":" in stack.host else stack.host
    sent_by = f"{via_host}:{stack.port}"
    return SipRequest(
        "MESSAGE",
        f"sip:m@{peer.host}:{peer.port}",
        Headers(
            [
                (
                    "Via",
                    f"SIP/2.0/{peer.transport.upper()} {sent_by};branch={new_branch()}",
                ),
                ("From", "<sip:conf@example.com>;tag=f1"),
                ("To", "<sip:m@example.org>;tag=t1"),
                ("Call-ID", f"{secrets.token_hex(4)}@test"),
                ("CSeq", "2 MESSAGE"),
                ("Max-Forwards", "70"),
                ("Content-Type", "text/plain"),
            ]
        ),
        body,
    )


@pytest.fixture
async def stack() -> AsyncIterator[SipStack]:
    limits = TcpLimits(
        max_connections=6,
        max_per_source=3,
        idle_timeout=1.0,
        message_deadline=0.6,
        sweep_interval=0.1,
    )
    app = App()
    s = SipStack(HOST, 0, app, NodeMetrics(), RateLimiter(1000, 1000), limits)
    await s.start()
    yield s
    s.close()


def metric(stack: SipStack, name: str, **labels: str) -> float:
    value = stack.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- one member's fault never touches another (RFC 3261 17.1.4) ----------------------


async def test_a_failing_destination_fails_only_its_own_transaction(
    stack: SipStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, broken, last = await sink(), await sink(), await sink()
    real_send = UdpEndpoint.send

    def faulty(self: UdpEndpoint, data: bytes, host: str, port: int) -> None:
        if port == broken.port:
            raise SendError("injected fault")
        real_send(self, data, host, port)

    monkeypatch.setattr(UdpEndpoint, "send", faulty)
    answers: dict[str, list[int | None]] = {"first": [], "broken": [], "name": [], "last": []}

    def record(key: str):  # type: ignore[no-untyped-def]
        return lambda r: answers[key].append(None if r is None else r.status)

    peers = {
        "first": Peer("udp", "127.0.0.1", first.port),
        "broken": Peer("udp", "127.0.0.1", broken.port),
        "name": Peer("udp", "localhost", last.port),  # a host name: never sent to
        "last": Peer("udp", "127.0.0.1", last.port),
    }
    sent = stack.send_requests(
        (message_to(stack, peer), peer, record(key)) for key, peer in peers.items()
    )
    assert sent == 4
    # Members after the broken ones still get the message.
    got_first, got_last = await first.next(), await last.next()
    assert isinstance(got_first, SipRequest) and isinstance(got_last, SipRequest)
    # The failed transactions ended at once with a 503 (8.1.3.1), nothing else.
    assert answers["broken"] == [503] and answers["name"] == [503]
    assert metric(stack, "sipfleet_node_transport_errors_total", side="client") == 2
    # Timers keep firing: the unanswered good deliveries are retransmitted at T1...
    again = await first.next(timeout=1.5)
    assert isinstance(again, SipRequest) and again.call_id == got_first.call_id
    # ...even when a retransmission itself fails inside the timer callback.
    monkeypatch.setattr(
        UdpEndpoint,
        "send",
        lambda self, data, host, port: (
            (_ for _ in ()).throw(SendError("late fault"))
            if port == first.port
            else real_send(self, data, host, port)
        ),
    )
    later = await last.next(timeout=3.0)
    while later.call_id != got_last.call_id:  # type: ignore[union-attr]
        later = await last.next(timeout=3.0)
    later = await last.next(timeout=3.0)  # one more round: the clock is still armed
    assert isinstance(later, SipRequest) and later.call_id == got_last.call_id
    assert answers["first"] == [503]
    assert stack.clock._handle is not None  # re-armed for the remaining transaction


async def test_a_raising_callback_does_not_stop_the_others(stack: SipStack) -> None:
    a, b = await sink(), await sink()
    seen: list[int] = []

    def explode(response: SipResponse | None) -> None:
        raise RuntimeError("a TU bug")

    pa, pb = Peer("udp", "127.0.0.1", a.port), Peer("udp", "127.0.0.1", b.port)
    stack.send_requests(
        [
            (message_to(stack, pa), pa, explode),
            (message_to(stack, pb), pb, lambda r: seen.append(0 if r is None else r.status)),
        ]
    )
    for peer_sink in (a, b):
        request = await peer_sink.next()
        assert isinstance(request, SipRequest) and peer_sink.transport is not None
        answer = SipResponse(200, "OK", request.headers.copy())
        peer_sink.transport.sendto(answer.to_bytes(), (HOST, stack.port))
    for _ in range(30):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen == [200]


# -- size-driven TCP falls back to UDP (RFC 3261 18.1.1) -----------------------------


async def test_large_request_to_a_udp_only_member_is_delivered_over_udp(stack: SipStack) -> None:
    member = await sink()  # UDP only: nothing listens on TCP at this port
    body = b"x" * 1500
    natural = Peer("udp", "127.0.0.1", member.port)
    peer = route_for_size(1700, natural)
    assert peer.transport == "tcp" and peer.udp_fallback
    statuses: list[int | None] = []
    stack.send_request(
        message_to(stack, peer, body), peer, lambda r: statuses.append(r and r.status)
    )
    got = await member.next()
    assert isinstance(got, SipRequest) and got.body == body
    assert got.via.transport == "UDP"  # the Via tells the truth about the transport
    assert member.transport is not None
    member.transport.sendto(
        SipResponse(200, "OK", got.headers.copy()).to_bytes(), (HOST, stack.port)
    )
    for _ in range(30):
        if statuses:
            break
        await asyncio.sleep(0.05)
    assert statuses == [200]
    assert metric(stack, "sipfleet_node_udp_fallbacks_total") == 1
    assert metric(stack, "sipfleet_node_tcp_closed_total", reason="connect_failed") == 1


async def test_large_request_to_a_tcp_member_goes_over_tcp(stack: SipStack) -> None:
    member = await sink()
    received: asyncio.Queue[SipRequest] = asyncio.Queue()

    class Listener(asyncio.Protocol):
        framer = StreamFramer()

        def data_received(self, data: bytes) -> None:
            for message in self.framer.feed(data):
                assert isinstance(message, SipRequest)
                received.put_nowait(message)

    server = await asyncio.get_running_loop().create_server(Listener, "127.0.0.1", member.port)
    try:
        peer = route_for_size(1700, Peer("udp", "127.0.0.1", member.port))
        stack.send_request(message_to(stack, peer, b"y" * 1500), peer)
        got = await asyncio.wait_for(received.get(), 3)
        assert got.via.transport == "TCP" and got.body == b"y" * 1500
        assert member.got.empty()
    finally:
        server.close()


# -- responses follow the Via (RFC 3261 18.2.2, RFC 3581) ----------------------------


OPTIONS = (
    "OPTIONS sip:probe@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {sent_by};branch=z9hG4bK{n}{rport}\r\n"
    "From: <sip:probe@{sent_by}>;tag={n}\r\nTo: <sip:probe@{host}>\r\nCall-ID: {n}@x\r\n"
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("rport", [False, True])
async def test_response_goes_to_the_sent_by_port_unless_rport(stack: SipStack, rport: bool) -> None:
    sender, listener = await sink(), await sink()
    request = OPTIONS.format(
        host=f"{HOST}:{stack.port}",
        sent_by=f"127.0.0.1:{listener.port}",
        n=secrets.token_hex(4),
        rport=";rport" if rport else "",
    )
    assert sender.transport is not None
    sender.transport.sendto(request.encode(), (HOST, stack.port))
    expected, other = (sender, listener) if rport else (listener, sender)
    response = await expected.next()
    assert isinstance(response, SipResponse) and response.status == 200
    assert other.got.empty()
    if rport:
        assert response.via.rport == sender.port and response.via.received == "127.0.0.1"


async def test_error_answers_follow_the_via_too(stack: SipStack) -> None:
    sender, listener = await sink(), await sink()
    request = OPTIONS.format(
        host=f"{HOST}:{stack.port}", sent_by=f"127.0.0.1:{listener.port}", n="e1", rport=""
    ).replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nRequire: nosuchext\r\n")
    assert sender.transport is not None
    sender.transport.sendto(request.encode(), (HOST, stack.port))
    response = await listener.next()
    assert isinstance(response, SipResponse) and response.status == 420


# -- IPv6 ----------------------------------------------------------------------------


async def test_ipv6_peers_are_served_on_the_twin_socket() -> None:
    app = App()
    s = SipStack("127.0.0.1", 0, app, NodeMetrics(), RateLimiter(1000, 1000))
    await s.start()
    try:
        v6 = await sink("::1")
        request = OPTIONS.format(
            host=f"[::1]:{s.port}", sent_by=f"[::1]:{v6.port}", n="v6", rport=";rport"
        )
        assert v6.transport is not None
        v6.transport.sendto(request.encode(), ("::1", s.port))
        response = await v6.next()
        assert isinstance(response, SipResponse) and response.status == 200
        assert response.via.received == "::1"
        assert s.local_uri("conf3-main", Peer("udp", "::1", 5)) == f"sip:conf3-main@[::1]:{s.port}"
        assert (
            s.local_uri("conf3-main", Peer("tcp", "127.0.0.1", 5))
            == f"sip:conf3-main@127.0.0.1:{s.port};transport=tcp"
        )
        assert s.target_of("sip:a@[::1]:5070", Peer("udp", "::1", 1)) == Peer("udp", "::1", 5070)
        assert s.target_of("sip:a@localhost", Peer("tcp", "::1", 1)) == Peer(
            "tcp", "127.0.0.1", 5060
        )
    finally:
        s.close()


# -- bounded TCP ---------------------------------------------------------------------


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    """Does the server close the connection within `within` seconds? (Reads to EOF.)"""
    try:
        await asyncio.wait_for(reader.read(), within)
    except TimeoutError:
        return False
    except ConnectionError:
        pass  # reset: closed too
    return True


async def test_tcp_per_source_cap_and_stalled_connections(stack: SipStack) -> None:
    conns = [await asyncio.open_connection(HOST, stack.port) for _ in range(4)]
    # The fourth from the same address is over max_per_source (3): closed at once.
    assert await _closed(conns[3][0], 0.5)
    assert metric(stack, "sipfleet_node_tcp_refused_total", reason="per_source") == 1
    # The three that never send a message are closed at the message deadline (0.6 s).
    assert all([await _closed(reader, 2.0) for reader, _ in conns[:3]])
    assert metric(stack, "sipfleet_node_tcp_closed_total", reason="half_sent") == 3
    assert len(stack._tcp) == 0
    assert metric(stack, "sipfleet_node_tcp_connections") == 0
    for _, writer in conns:
        writer.close()
    # Peer servers are exempt from the per-source cap (not from the total).
    stack.exempt = frozenset({"127.0.0.1"})
    conns = [await asyncio.open_connection(HOST, stack.port) for _ in range(5)]
    await asyncio.sleep(0.2)
    assert len(stack._tcp) == 5
    assert metric(stack, "sipfleet_node_tcp_refused_total", reason="per_source") == 1
    for _, writer in conns:
        writer.close()


async def test_tcp_half_sent_message_and_idle_connection_are_closed(stack: SipStack) -> None:
    request = OPTIONS.format(
        host=f"{HOST}:{stack.port}", sent_by="127.0.0.1:9", n="t1", rport=""
    ).replace("UDP", "TCP")
    # Half a message, never finished: closed after the deadline.
    half_r, half_w = await asyncio.open_connection(HOST, stack.port)
    half_w.write(request.encode()[:40])
    # A whole message, then silence: answered, then closed when idle (1 s).
    idle_r, idle_w = await asyncio.open_connection(HOST, stack.port)
    idle_w.write(request.replace("t1", "t2").encode())
    assert (await asyncio.wait_for(idle_r.readline(), 2)) == b"SIP/2.0 200 OK\r\n"
    assert await _closed(half_r, 2.0)
    assert await _closed(idle_r, 3.0)
    assert metric(stack, "sipfleet_node_tcp_closed_total", reason="half_sent") == 1
    assert metric(stack, "sipfleet_node_tcp_closed_total", reason="idle") == 1
    half_w.close()
    idle_w.close()


async def test_tcp_total_cap() -> None:
    limits = TcpLimits(max_connections=2, max_per_source=10)
    s = SipStack(HOST, 0, App(), NodeMetrics(), RateLimiter(1000, 1000), limits)
    await s.start()
    try:
        conns = [await asyncio.open_connection(HOST, s.port) for _ in range(3)]
        assert await _closed(conns[2][0], 0.5)
        assert (
            s.metrics.registry.get_sample_value(
                "sipfleet_node_tcp_refused_total", {"reason": "total"}
            )
            == 1
        )
        # No room for an outbound connection either: a send error, not a hang.
        with pytest.raises(SendError):
            s._tcp.send("127.0.0.1", 9, b"x")
        for _, writer in conns:
            writer.close()
    finally:
        s.close()


async def test_tcp_peer_that_does_not_read_is_cut_off() -> None:
    limits = TcpLimits(max_write_buffer=64 << 10)
    s = SipStack(HOST, 0, App(), NodeMetrics(), RateLimiter(1000, 1000), limits)
    await s.start()
    accepted: list[asyncio.StreamWriter] = []

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # While connecting, queued data is bounded too.
        with pytest.raises(SendError, match="queued"):
            s._tcp.send("127.0.0.1", port, b"x" * (65 << 10))
        s._tcp.send("127.0.0.1", port, b"x" * 1000)
        await asyncio.sleep(0.2)
        chunk = b"y" * (256 << 10)
        with pytest.raises(SendError, match="not reading"):
            for _ in range(400):  # at most 100 MiB: the kernel buffers fill long before
                s._tcp.send("127.0.0.1", port, chunk)
                await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        assert (
            s.metrics.registry.get_sample_value(
                "sipfleet_node_tcp_closed_total", {"reason": "write_buffer"}
            )
            == 1
        )
    finally:
        server.close()
        s.close()


async def test_tcp_response_after_the_connection_closed_goes_to_the_sent_by_port() -> None:
    """RFC 3261 18.2.2: the response goes on the request's connection; that one
    gone, on a new connection to received at the sent-by port."""
    pending: list[RequestContext] = []

    class Later(App):
        def handle_request(self, ctx: RequestContext) -> None:
            pending.append(ctx)

    s = SipStack(HOST, 0, Later(), NodeMetrics(), RateLimiter(1000, 1000))
    await s.start()
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.put_nowait(await reader.readline())
        writer.close()

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        request = OPTIONS.format(
            host=f"{HOST}:{s.port}", sent_by=f"127.0.0.1:{port}", n="gone", rport=""
        ).replace("UDP", "TCP")
        _, writer = await asyncio.open_connection(HOST, s.port)
        writer.write(request.encode())
        await writer.drain()
        for _ in range(40):
            if pending:
                break
            await asyncio.sleep(0.05)
        writer.close()
        await asyncio.sleep(0.3)  # the server has seen the connection close
        pending[0].respond(200)
        assert await asyncio.wait_for(got.get(), 3) == b"SIP/2.0 200 OK\r\n"
    finally:
        server.close()
        s.close()


async def test_ipv6_configured_server_serves_ipv4_on_its_twin() -> None:
    s = SipStack("::1", 0, App(), NodeMetrics(), RateLimiter(1000, 1000))
    await s.start()
    try:
        v4 = await sink("127.0.0.1")
        request = OPTIONS.format(
            host=f"[::1]:{s.port}", sent_by=f"127.0.0.1:{v4.port}", n="v4", rport=""
        )
        assert v4.transport is not None
        v4.transport.sendto(request.encode(), ("127.0.0.1", s.port))
        response = await v4.next()
        assert isinstance(response, SipResponse) and response.status == 200
        assert s.local_uri("u", Peer("udp", "127.0.0.1", 1)) == f"sip:u@127.0.0.1:{s.port}"
        assert s.sent_by(Peer("udp", "::1", 1)) == f"[::1]:{s.port}"
    finally:
        s.close()
