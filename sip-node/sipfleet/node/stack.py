"""The SIP stack glue: rate limit -> parse -> validate -> core transactions -> application.

Malformed requests get the core's error response (the status its
SipParseError names) when they can be routed back, else they are dropped;
every parse failure is counted. Requests this server sends that are larger
than 1300 bytes go over TCP (RFC 3261 18.1.1), falling back to UDP if the
connection fails: see `route_for_size`. Responses go where the top Via says
(RFC 3261 18.2.2, RFC 3581: `sip.via.response_route`).

A send that fails is a transport error of the one transaction that sent it
(17.1.4): that transaction ends (a client's callback gets a 503, 8.1.3.1; an
INVITE server transaction counts as un-ACKed) and every other delivery, timer
and callback carries on. The transaction clock is re-armed after every call.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from sipfleet.node.auth.lockout import Lockout
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.sip import (
    Headers,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    format_hostport,
    parse_message,
)
from sipfleet.node.sip.message import Outbound
from sipfleet.node.sip.response import error_response, make_response
from sipfleet.node.sip.target import UnreachableTarget, request_target
from sipfleet.node.sip.transaction import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
    Transmit,
    TransportFailed,
)
from sipfleet.node.sip.validate import Policy, check_request
from sipfleet.node.sip.via import response_route, stamp_via
from sipfleet.node.timers import LayerClock
from sipfleet.node.tls import Certificates
from sipfleet.node.transport import (
    Peer,
    PeerTable,
    SendError,
    TcpConnection,
    TcpLimits,
    TcpPool,
    UdpEndpoint,
    address_family,
    listen_hosts,
)

log = logging.getLogger(__name__)

UDP_MAX_REQUEST = 1300
PORT_ATTEMPTS = 5  # with port 0, tries to find a port free on both UDP and TCP
SYNTAX_ERRORS = frozenset({400, 413, 414, 416, 505})
# Bodies this server takes: SDP offers on INVITE, chat payloads on MESSAGE, sipfrag on
# NOTIFY; anything else is answered 415 (RFC 3261 8.2.3, RFC 4475 3.3.7).
POLICY = Policy(
    accepted_types=frozenset(
        {
            "application/sdp",
            "text/plain",
            "text/html",
            "message/cpim",
            "message/sipfrag",
            "multipart/mixed",
            "application/json",
            "application/im-iscomposing+xml",
        }
    )
)

Header = tuple[str, str]
ResponseCallback = Callable[[SipResponse | None], None]
"""Gets every response of a client transaction; None once if it timed out."""
Outgoing = tuple[SipRequest | Outbound, Peer, ResponseCallback | None]
"""A request (or one prepared with its wire form, `Dialog.prepare`) to send in a new
client transaction: to whom, and who gets the answers."""


class StreamPool(Protocol):
    """Connections of one transport by remote (host, port): TCP, TLS, WebSocket."""

    def send(
        self, host: str, port: int, data: bytes, tx_id: str = "", *, connect: bool = True
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Advertised:
    """Where members reach this server when that is not where it listens (a node's
    address and host port, a Service's address and port): the address it writes
    into what it sends them. A port of 0 means the listening port."""

    host: str
    udp_port: int = 0
    tcp_port: int = 0
    tls_port: int = 0

    def port(self, transport: str) -> int:
        """The advertised port of `transport` (Peer.transport), 0 when not set."""
        if transport == "udp":
            return self.udp_port
        if transport == "tcp":
            return self.tcp_port
        return self.tls_port if transport == "tls" else 0


class Application(Protocol):
    def handle_request(self, ctx: RequestContext) -> None: ...
    def handle_ack(self, request: SipRequest) -> None: ...
    def handle_unacked(self, request: SipRequest) -> None: ...


class RequestContext:
    """A received request (a new server transaction) and how to answer it."""

    __slots__ = ("cancels", "peer", "request", "stack", "tx_id")

    def __init__(
        self,
        stack: SipStack,
        tx_id: str,
        request: SipRequest,
        peer: Peer,
        cancels: str | None = None,
    ) -> None:
        self.stack, self.tx_id, self.request, self.peer = stack, tx_id, request, peer
        self.cancels = cancels  # CANCEL: the INVITE server transaction it matches

    def respond(
        self,
        status: int,
        headers: Iterable[Header] = (),
        body: bytes = b"",
        to_tag: str | None = None,
        reason: str | None = None,
    ) -> None:
        response = make_response(
            self.request, status, reason, to_tag=to_tag, headers=headers, body=body
        )
        self.stack.process(self.stack.layer.respond(self.tx_id, response, self.stack.now()))


def route_for_size(size: int, peer: Peer) -> Peer:
    """The peer to send a request of `size` bytes to: over UDP above 1300 bytes,
    TCP instead, marked to fall back to UDP should the connection fail (RFC 3261
    18.1.1: a UA need not listen on TCP)."""
    if peer.transport == "udp" and size > UDP_MAX_REQUEST:
        return Peer("tcp", peer.host, peer.port, udp_fallback=True)
    return peer


def transport_failure(request: SipRequest) -> SipResponse:
    """What a client transaction's TU sees when the transport failed: a 503
    (RFC 3261 8.1.3.1), with the request's Call-ID and CSeq for matching."""
    headers = Headers()
    for name in ("Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("Warning", '399 sipfleet "transport error"')
    return SipResponse(503, "Service Unavailable", headers)


def reply_address(response: SipResponse, peer: Peer) -> Peer:
    """Where a response the transaction layer never saw (an answer to a request
    that failed parsing or validation) goes: by the top Via it copied (RFC 3261
    18.2.2, RFC 3581), or back to the source `peer` when there is no usable Via."""
    vias = response.headers.get_list("Via")
    try:
        via = stamp_via(Via.parse(vias[0]), (peer.host, peer.port))
    except (SipParseError, IndexError):
        return peer
    host, port = response_route(via, (peer.host, peer.port), peer.transport).address
    return Peer(peer.transport, host, port)


class SipStack:
    """The SIP transport and transaction layers for one server: UDP and TCP on
    `host` (and its other-family twin, see `transport.listen_hosts`) at `port`,
    and TLS at `tls.settings.port` when given `tls` (RFC 3261 26.2; port 0: a
    free one). WebSocket listeners add themselves with `add_stream`.
    With `advertised`, every address the helpers below write is the advertised
    one (docs/transport.md)."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Application,
        metrics: NodeMetrics,
        limiter: RateLimiter,
        tcp_limits: TcpLimits | None = None,
        advertised: Advertised | None = None,
        tls: Certificates | None = None,
    ) -> None:
        self.host, self.port, self.app = host, port, app
        self.advertised = advertised
        self.metrics, self.limiter = metrics, limiter
        self.lockout: Lockout | None = None  # sources locked out by member authentication
        self._loop = asyncio.get_running_loop()
        self.layer = TransactionLayer()
        self.clock = LayerClock(self._loop, self.layer, self.process)
        self._udp: dict[int, UdpEndpoint] = {}  # by address family
        self._hosts: dict[int, str] = {}  # our address per family
        self._sent_by: dict[tuple[str, int], str] = {}  # Via sent-by per (host, port)
        self._tcp = TcpPool(self._loop, self, metrics, tcp_limits)
        self._tls = (
            None
            if tls is None
            else TcpPool(
                self._loop,
                self,
                metrics,
                tcp_limits,
                server_ssl=tls.server,
                client_ssl=tls.client,
                peer_ssl=tls.peers,
            )
        )
        self.s2s_tls = False  # requests to the fleet's other servers go over TLS
        self.ports: dict[str, int] = {}  # listening port by transport (Peer.transport)
        self._tls_port = 0 if tls is None else tls.settings.port
        self._streams: dict[str, StreamPool] = {"tcp": self._tcp}
        if self._tls is not None:
            self._streams["tls"] = self._tls
        self._tcp_servers: list[asyncio.AbstractServer] = []
        self._callbacks: dict[str, ResponseCallback] = {}
        self._peers = PeerTable()  # a transaction's source, kept for reuse

    @property
    def exempt(self) -> frozenset[str]:
        """Peer server addresses: not rate limited, nor held to the TCP per-source cap."""
        return self._tcp.exempt

    @exempt.setter
    def exempt(self, hosts: frozenset[str]) -> None:
        self._tcp.exempt = hosts
        if self._tls is not None:
            self._tls.exempt = hosts

    def add_stream(self, transport: str, pool: StreamPool, port: int) -> None:
        """Send `transport` ("ws", "wss") through `pool`, which listens at `port`."""
        self._streams[transport] = pool
        self.ports[transport] = port

    def now(self) -> float:
        return self._loop.time()

    async def start(self) -> None:
        """Listen on UDP and TCP at `host` (raises OSError if that fails), then at
        its twin of the other address family on the same port when it can. With
        port 0, a port free for all of them is looked for (PORT_ATTEMPTS tries)."""
        hosts = listen_hosts(self.host)
        attempts = PORT_ATTEMPTS if self.port == 0 else 1
        for attempt in range(attempts):
            try:
                await self._listen_all(hosts, self.port if attempt == 0 else 0)
                return
            except OSError as exc:
                self._close_listeners()
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise

    async def _listen_all(self, hosts: list[str], port: int) -> None:
        primary, *twins = hosts
        await self._listen(primary, port)
        for twin in twins:
            try:
                await self._listen(twin, self.port)
            except OSError as exc:
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    raise  # the port the kernel picked is taken there: pick another
                log.info("not listening on %s (%s): members must use %s", twin, exc, primary)

    def _close_listeners(self) -> None:
        for endpoint in self._udp.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        for server in self._tcp_servers:
            server.close()
        self._udp.clear()
        self._hosts.clear()
        self._tcp_servers.clear()
        self.ports.pop("tls", None)

    async def _listen(self, host: str, port: int) -> None:
        """UDP and TCP at host:port (port 0: a free one, then kept in `self.port`)."""
        family = address_family(host)
        assert family is not None  # Config only takes IP addresses
        endpoint = UdpEndpoint(self, family)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:  # IPv4 goes to its own socket, as with TCP
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        transport, _ = await self._loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
        port = transport.get_extra_info("sockname")[1]
        try:
            server = await self._loop.create_server(
                self._tcp.inbound, host, port, family=family, reuse_address=True
            )
        except OSError:
            transport.close()
            raise
        self._tcp_servers.append(server)
        if self._tls is not None:
            tls_port = self.ports.get("tls", self._tls_port)
            try:
                server = await self._loop.create_server(  # TLS: TcpConnection does it
                    self._tls.inbound, host, tls_port, family=family, reuse_address=True
                )
            except OSError:
                transport.close()
                self._tcp_servers.pop().close()
                raise
            self._tcp_servers.append(server)
            self.ports["tls"] = server.sockets[0].getsockname()[1]
        self.port = port
        self.ports["udp"] = self.ports["tcp"] = port
        self._udp[family], self._hosts[family] = endpoint, host

    def close(self) -> None:
        self.clock.close()
        self._close_listeners()
        self._tcp.close()
        if self._tls is not None:
            self._tls.close()

    # ---- addresses the group layer writes --------------------------------------------
    def local_host(self, peer: Peer) -> str:
        """Our address for `peer`, socket form: the advertised one (see `SipStack`),
        else our address in its family (the primary one if we have none in it)."""
        if self.advertised is not None:
            return self.advertised.host
        family = address_family(peer.host)
        return self.host if family is None else self._hosts.get(family, self.host)

    def local_port(self, peer: Peer) -> int:
        """Our port for `peer`: the advertised port of its transport, else ours
        (the TLS or WebSocket port for a peer on one of those)."""
        port = self.ports.get(peer.transport, self.port)
        advertised = self.advertised
        if advertised is not None:
            return advertised.port(peer.transport) or port
        return port

    def sent_by(self, peer: Peer) -> str:
        """The Via sent-by for requests to `peer`: `local_host` and `local_port`
        (RFC 3261 18.1.1), IPv6 bracketed. (Once per fan-out delivery, so kept
        ready.)"""
        host, port = self.local_host(peer), self.local_port(peer)
        key = (host, port)
        sent_by = self._sent_by.get(key)
        if sent_by is None:
            sent_by = format_hostport(host, port)
            self._sent_by[key] = sent_by
        return sent_by

    def local_uri(self, user: str, peer: Peer) -> str:
        """`sip:user@host:port` as `peer` reaches this server: `local_host` and
        `local_port` (IPv6 bracketed, RFC 3261 25.1); `;transport=tcp` when it uses
        TCP; on TLS the TLS port, `sips:` for a peer that uses sips: URIs (RFC 3261
        12.1.1) else `;transport=tls`, so a member that came over TLS stays on TLS
        (26.2.2); `;transport=ws`/`wss` on WebSocket (RFC 7118 5). So its requests in
        the dialog come back the way it can send them (RFC 3261 8.1.1.8, 12.1.1,
        19.1.1). Use it for Contact, Record-Route and Refer-To values written for it."""
        hostport = format_hostport(self.local_host(peer), self.local_port(peer))
        transport = peer.transport
        if peer.sips:
            return f"sips:{user}@{hostport}"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user}@{hostport}{suffix}"

    def uri_for(self, uri: str, peer: Peer) -> str:
        """`uri` (a SIP URI of this fleet, e.g. a 302 Contact or a Refer-To target)
        as `peer` must use it (RFC 3261 19.1.1), when the URI names no transport:
        `;transport=tcp` added for a TCP peer, so a TCP-only UA can follow it; for a
        TLS peer the server's TLS port, taken to be as far above its SIP port as ours
        is (every server of a fleet is configured alike), as `sips:` for a peer that
        uses sips: URIs, else with `;transport=tls`, so the member stays on TLS (RFC
        3261 26.2.2); for a WebSocket peer the server's ws (wss) port by the same
        rule, with `;transport=ws` (`wss`, RFC 7118 5), since a browser can follow
        nothing else. A URI that does not parse as SIP, any URI for a UDP peer, and
        one for a peer on a transport this server does not listen on, are returned
        as they are."""
        if peer.transport not in ("tcp", "tls", "ws", "wss"):
            return uri
        try:
            parsed = SipUri.parse(uri)
        except SipParseError:
            return uri
        if "transport" in parsed.params or parsed.scheme != "sip":
            return uri
        if peer.transport == "tcp":
            parsed.params["transport"] = "tcp"
            return str(parsed)
        if peer.transport == "tls":
            offset = self.local_port(peer) - self.local_port(Peer("udp", peer.host, 0))
        elif peer.transport in self.ports:  # WebSocket ports are never advertised
            offset = self.ports[peer.transport] - self.port
        else:
            return uri
        port = (parsed.port or 5060) + offset
        if not 0 < port < 65536:
            return uri
        parsed.port = port
        if peer.sips:
            parsed.scheme = "sips"
        else:
            parsed.params["transport"] = peer.transport
        return str(parsed)

    def server_peer(self, target: Peer) -> Peer:
        """Where a request to another server of the fleet goes, given its shard or
        server URI's host and port (`target`): TCP there, or with server-to-server
        TLS (`s2s_tls`) TLS at its TLS port, as far above its SIP port as ours is."""
        if not self.s2s_tls:
            return Peer("tcp", target.host, target.port)
        offset = self.ports.get("tls", self._tls_port) - self.port
        return Peer("tls", target.host, target.port + offset)

    def target_of(self, uri: str, via: Peer) -> Peer:
        """Where to send requests for a Contact (or other) URI that `via` gave us
        (RFC 3263 4 without DNS, see `sip.target.request_target`); the default
        transport is the one `via` used. Raises SipParseError for a bad URI and
        sip.target.UnreachableTarget for one this server cannot send to (a host
        name, `.invalid`, TLS without a certificate, or an address family it does not
        listen on). A WebSocket peer cannot be connected to: requests for it go back
        over its connection whatever its Contact says (RFC 7118 5)."""
        if via.transport in ("ws", "wss"):
            SipUri.parse(uri)
            return via
        loopback = "127.0.0.1" if socket.AF_INET in self._udp or not self._udp else "::1"
        parsed = SipUri.parse(uri)
        target = request_target(parsed, via.transport, loopback)
        transport = target.transport.lower()
        if transport not in ("udp", "tcp", "tls") or (transport == "tls" and self._tls is None):
            raise UnreachableTarget(f"transport {target.transport} is not offered here")
        if self._udp and address_family(target.host) not in self._udp:
            raise UnreachableTarget(f"this server has no IPv4/IPv6 socket for {target.host}")
        return Peer(transport, target.host, target.port, sips=parsed.scheme == "sips")

    # ---- sending ---------------------------------------------------------------------
    def transmit(self, data: bytes, peer: Peer) -> None:
        """Send outside any transaction (an ACK for a 2xx, an error answer); a
        failure is counted and logged, never raised."""
        try:
            self._send(data, peer.transport, peer.host, peer.port)
        except SendError as exc:
            self.metrics.transport_errors.labels("none").inc()
            log.info("could not send to %s: %s", peer, exc)

    def _send(
        self,
        data: bytes,
        transport: str,
        host: str,
        port: int,
        tx_id: str = "",
        connect: bool = True,
    ) -> None:
        """Send over `transport` (Peer.transport). Raises SendError when the message
        cannot be handed to the network (or, with `connect` False, when there is no
        open connection to host:port)."""
        if transport == "udp":
            endpoint = self._udp.get(address_family(host) or 0)
            if endpoint is None:
                raise SendError(f"no UDP socket can send to {host!r}")
            endpoint.send(data, host, port)
            return
        pool = self._streams.get(transport)
        if pool is None:
            raise SendError(f"no {transport} transport here")
        pool.send(host, port, data, tx_id, connect=connect)

    def send_request(
        self, request: SipRequest | Outbound, peer: Peer, callback: ResponseCallback | None = None
    ) -> str:
        """Start a client transaction (the request's top Via carries a fresh branch);
        returns its id."""
        tx_ids: list[str] = []
        self.send_requests([(request, peer, callback)], tx_ids)
        return tx_ids[0]

    def send_requests(self, batch: Iterable[Outgoing], tx_ids: list[str] | None = None) -> int:
        """Start a client transaction for each (request, peer, callback) and send it
        at once; returns how many (and appends their ids to `tx_ids`). A fan-out
        passes all its deliveries here, so they share one clock re-arm and one
        metrics update instead of one per delivery."""
        now = self.now()
        count = 0
        layer = self.layer
        try:
            for request, peer, callback in batch:
                destination, transport = (peer.host, peer.port), peer.transport.upper()
                fallback = peer.udp_fallback
                if isinstance(request, Outbound):
                    tx_id, events = layer.send_prepared(
                        request, destination, transport, now, udp_fallback=fallback
                    )
                else:
                    tx_id, events = layer.send_request(
                        request, destination, transport, now, udp_fallback=fallback
                    )
                if tx_ids is not None:
                    tx_ids.append(tx_id)
                if callback is not None:
                    self._callbacks[tx_id] = callback
                self._act(events)
                count += 1
        finally:
            self.metrics.transactions.inc(count)
            self.clock.rearm()
        return count

    def cancel(self, tx_id: str) -> None:
        """CANCEL a client INVITE transaction (RFC 3261 9.1; see TransactionLayer.cancel)."""
        self.process(self.layer.cancel(tx_id, self.now()))

    def process(self, events: list[Event]) -> None:
        """Act on the layer's events (also called by the clock)."""
        try:
            self._act(events)
        finally:
            self.clock.rearm()

    def on_send_failed(self, tx_ids: list[str]) -> None:
        """The TCP pool could not connect for these transactions (17.1.4)."""
        self.process([e for tx_id in tx_ids for e in self._transport_error(tx_id)])

    def _transport_error(self, tx_id: str) -> list[Event]:
        before = self.layer.stats.udp_fallbacks
        events = self.layer.transport_error(tx_id, self.now())
        if self.layer.stats.udp_fallbacks != before:
            self.metrics.udp_fallbacks.inc()
        return events

    def _act(self, events: list[Event]) -> None:
        """Act on each event; one event's failure (a send error, a TU callback
        raising) never keeps the others from being acted on."""
        queue = list(events)
        for event in queue:
            if isinstance(event, Transmit):
                if event.retransmission:
                    self.metrics.retransmissions.inc()
                if not self._transmit_event(event):
                    queue += self._transport_error(event.tx_id)
                continue
            try:
                self._dispatch(event)
            except Exception:
                log.exception("error handling %s", type(event).__name__)

    def _transmit_event(self, event: Transmit) -> bool:
        """Send it; a response over TCP whose connection is gone goes on a new one
        to its fallback address (RFC 3261 18.2.2). False if it could not be sent."""
        transport = event.transport.lower()
        host, port = event.destination
        try:
            self._send(event.data, transport, host, port, event.tx_id, event.fallback is None)
            return True
        except SendError as exc:
            if event.fallback is None:
                log.info("send to %s:%s failed: %s", host, port, exc)
                return False
        host, port = event.fallback
        try:
            self._send(event.data, transport, host, port, event.tx_id)
            return True
        except SendError as exc:
            log.info("send to %s:%s failed: %s", host, port, exc)
            return False

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self.metrics.transactions.inc()
            self._deliver(event)
        elif isinstance(event, ResponseReceived):
            callback = self._callbacks.get(event.tx_id)
            if event.response.status >= 200:
                self._callbacks.pop(event.tx_id, None)
            if callback is not None:
                callback(event.response)
        elif isinstance(event, AckReceived):
            self.app.handle_ack(event.request)
        elif isinstance(event, TransportFailed):
            self.metrics.transport_errors.labels("server" if event.server else "client").inc()
            if event.server:
                if event.request.method == "INVITE":
                    self.app.handle_unacked(event.request)  # our 2xx cannot reach it
            else:
                callback = self._callbacks.pop(event.tx_id, None)
                if callback is not None:
                    callback(transport_failure(event.request))
        elif isinstance(event, TransactionTimedOut) and event.server:
            if event.request.method == "INVITE":
                self.app.handle_unacked(event.request)
        elif isinstance(event, TransactionTimedOut):
            callback = self._callbacks.pop(event.tx_id, None)
            if callback is not None:
                callback(None)

    def _deliver(self, event: RequestReceived) -> None:
        sips = event.transport == "TLS" and event.request.uri[:5].lower() == "sips:"
        peer = self._peers.get(event.transport, *event.source, sips)
        ctx = RequestContext(self, event.tx_id, event.request, peer, event.cancels)
        try:
            self.app.handle_request(ctx)
        except SipParseError as exc:
            self.metrics.parse_errors.inc()
            ctx.respond(exc.status, [("Warning", '399 sipfleet "malformed header field"')])
        except Exception:
            log.exception("error handling %s from %s", event.request.method, ctx.peer)
            ctx.respond(500)

    # ---- receiving -------------------------------------------------------------------
    def on_datagram(self, data: bytes, peer: Peer) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # keepalive
        if not data.startswith(b"SIP/") and not self._allowed(peer):
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._bad_input(exc, peer)
            return
        self._receive(message, peer)

    def on_stream_message(self, message: SipMessage, peer: Peer, conn: TcpConnection) -> None:
        if isinstance(message, SipRequest) and not self._allowed(peer):
            return
        self._receive(message, peer)

    def on_stream_error(self, error: SipParseError, peer: Peer, conn: TcpConnection) -> None:
        self._bad_input(error, peer)

    def _bad_input(self, error: SipParseError, peer: Peer) -> None:
        self.metrics.parse_errors.inc()
        log.debug("bad input from %s: %s", peer, error)
        response = error_response(error)
        if response is not None:
            self.transmit(response.to_bytes(), reply_address(response, peer))

    def _allowed(self, peer: Peer) -> bool:
        if peer.host in self.exempt:
            return True
        now = self._loop.time()
        if self.lockout is not None and self.lockout.locked(peer.host, now):
            self.metrics.member_auth_failures.labels("locked_out").inc()
            return False
        if self.limiter.allow(peer.host, now):
            return True
        self.metrics.rate_limited.inc()
        return False

    def _receive(self, message: SipMessage, peer: Peer) -> None:
        if isinstance(message, SipRequest):
            try:
                error = check_request(message, POLICY)
            except SipParseError:  # an invalid ACK: dropped
                self.metrics.parse_errors.inc()
                return
            if error is not None:
                if error.status in SYNTAX_ERRORS:
                    self.metrics.parse_errors.inc()
                self.transmit(error.to_bytes(), reply_address(error, peer))
                return
        self.process(
            self.layer.receive(message, (peer.host, peer.port), peer.transport.upper(), self.now())
        )
