"""The SIP stack glue: rate limit -> parse -> validate -> core transactions -> application.

Malformed requests get the core's error response (the status its
SipParseError names) when they can be routed back, else they are dropped;
every parse failure is counted. Requests this server sends that are larger
than 1300 bytes go over TCP (RFC 3261 18.1.1): see `route_for_size`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.sip import SipMessage, SipParseError, SipRequest, SipResponse, parse_message
from sipfleet.node.sip.message import Outbound
from sipfleet.node.sip.response import error_response, make_response
from sipfleet.node.sip.transaction import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
    Transmit,
)
from sipfleet.node.sip.validate import Policy, check_request
from sipfleet.node.timers import LayerClock
from sipfleet.node.transport import Peer, TcpConnection, TcpPool, UdpEndpoint

log = logging.getLogger(__name__)

UDP_MAX_REQUEST = 1300
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
    """The peer to send a request of `size` bytes to (UDP above 1300 bytes -> TCP)."""
    if peer.transport == "udp" and size > UDP_MAX_REQUEST:
        return Peer("tcp", peer.host, peer.port)
    return peer


class SipStack:
    def __init__(
        self, host: str, port: int, app: Application, metrics: NodeMetrics, limiter: RateLimiter
    ) -> None:
        self.host, self.port, self.app = host, port, app
        self.metrics, self.limiter = metrics, limiter
        self.exempt: frozenset[str] = frozenset()  # peer server IPs, not rate limited
        self._loop = asyncio.get_running_loop()
        self.layer = TransactionLayer()
        self.clock = LayerClock(self._loop, self.layer, self.process)
        self._udp = UdpEndpoint(self)
        self._tcp = TcpPool(self._loop, self)
        self._tcp_server: asyncio.AbstractServer | None = None
        self._callbacks: dict[str, ResponseCallback] = {}

    def now(self) -> float:
        return self._loop.time()

    async def start(self) -> None:
        await self._loop.create_datagram_endpoint(
            lambda: self._udp, local_addr=(self.host, self.port)
        )
        assert self._udp.transport is not None
        if self.port == 0:
            self.port = self._udp.transport.get_extra_info("sockname")[1]
        self._tcp_server = await self._loop.create_server(self._tcp.inbound, self.host, self.port)

    def close(self) -> None:
        self.clock.close()
        if self._udp.transport is not None:
            self._udp.transport.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        self._tcp.close()

    # ---- sending ---------------------------------------------------------------------
    def transmit(self, data: bytes, peer: Peer) -> None:
        self._send(data, peer.transport == "udp", peer.host, peer.port)

    def _send(self, data: bytes, udp: bool, host: str, port: int) -> None:
        if udp:
            self._udp.send(data, host, port)
        else:
            self._tcp.send(host, port, data)

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
        for request, peer, callback in batch:
            destination, transport = (peer.host, peer.port), peer.transport.upper()
            if isinstance(request, Outbound):
                tx_id, events = layer.send_prepared(request, destination, transport, now)
            else:
                tx_id, events = layer.send_request(request, destination, transport, now)
            if tx_ids is not None:
                tx_ids.append(tx_id)
            if callback is not None:
                self._callbacks[tx_id] = callback
            self._act(events)
            count += 1
        self.metrics.transactions.inc(count)
        self.clock.rearm()
        return count

    def cancel(self, tx_id: str) -> None:
        """CANCEL a client INVITE transaction (RFC 3261 9.1; see TransactionLayer.cancel)."""
        self.process(self.layer.cancel(tx_id, self.now()))

    def process(self, events: list[Event]) -> None:
        """Act on the layer's events (also called by the clock)."""
        self._act(events)
        self.clock.rearm()

    def _act(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Transmit):
                if event.retransmission:
                    self.metrics.retransmissions.inc()
                host, port = event.destination
                self._send(event.data, event.transport.upper() == "UDP", host, port)
            elif isinstance(event, RequestReceived):
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
            elif isinstance(event, TransactionTimedOut) and event.server:
                if event.request.method == "INVITE":
                    self.app.handle_unacked(event.request)
            elif isinstance(event, TransactionTimedOut):
                callback = self._callbacks.pop(event.tx_id, None)
                if callback is not None:
                    callback(None)

    def _deliver(self, event: RequestReceived) -> None:
        transport = "udp" if event.transport.upper() == "UDP" else "tcp"
        ctx = RequestContext(
            self, event.tx_id, event.request, Peer(transport, *event.source), event.cancels
        )
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
            self.transmit(response.to_bytes(), peer)

    def _allowed(self, peer: Peer) -> bool:
        if peer.host in self.exempt or self.limiter.allow(peer.host, self.now()):
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
                self.transmit(error.to_bytes(), peer)
                return
        self.process(
            self.layer.receive(message, (peer.host, peer.port), peer.transport.upper(), self.now())
        )
