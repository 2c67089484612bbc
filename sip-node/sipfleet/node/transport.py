"""asyncio adapters: UDP endpoints and TCP or TLS connections (inbound and pooled outbound).

Every resource a peer can make this server hold here is bounded: TCP
connections in total and per source address, how long one may stay idle,
how long a message may stay half-sent, and the bytes buffered either way
(`TcpLimits`). Send failures raise `SendError` so the stack can fail the one
transaction that was sending (RFC 3261 17.1.4) and carry on with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, cast

from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.sip import Limits, SipMessage, SipParseError, StreamFramer
from sipfleet.node.tls import ServerSession

log = logging.getLogger(__name__)

UDP_BUFFER = 4 << 20


class SendError(OSError):
    """A message could not be handed to the network (unsendable address, closed
    or over-full connection, failed connect)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to; transport is "udp", "tcp", "tls", "ws" or
    "wss" (lower case), host is
    an IP address in socket form (IPv6 without brackets). `udp_fallback` marks a
    request sent over TCP only because of its size (RFC 3261 18.1.1): should the
    connection fail, it is re-sent over UDP. `sips` marks a TLS peer that uses
    `sips:` URIs (its request's Request-URI or its Contact), so the URIs written for
    it are `sips:` too (RFC 3261 12.1.1); other TLS peers get `;transport=tls`."""

    transport: str
    host: str
    port: int
    udp_fallback: bool = False
    sips: bool = False


MAX_PEERS = 4096  # Peer objects a PeerTable keeps for reuse


class PeerTable:
    """Peers kept from one message to the next: most come from the same few
    addresses, and building a frozen dataclass costs about 1 us. Bounded: cleared
    when `limit` are kept, so a flood of sources cannot grow it."""

    __slots__ = ("_limit", "_peers")

    def __init__(self, limit: int = MAX_PEERS) -> None:
        self._limit = limit
        self._peers: dict[tuple[str, str, int, bool], Peer] = {}

    def get(self, transport: str, host: str, port: int, sips: bool = False) -> Peer:
        """The Peer for `transport` (any case; the Peer's is lower case), host, port
        and `sips` (a TLS request for a sips: URI, see Peer)."""
        key = (transport, host, port, sips)
        peer = self._peers.get(key)
        if peer is None:
            if len(self._peers) >= self._limit:
                self._peers.clear()
            peer = self._peers[key] = Peer(transport.lower(), host, port, sips=sips)
        return peer


@lru_cache(maxsize=4096)
def address_family(host: str) -> int | None:
    """socket.AF_INET or AF_INET6 for an IP address literal, None for anything else
    (a host name is never resolved here: that would block the event loop)."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return None
    return socket.AF_INET if version == 4 else socket.AF_INET6


class Receiver(Protocol):
    def on_datagram(self, data: bytes, peer: Peer) -> None: ...
    def on_stream_message(self, message: SipMessage, peer: Peer, conn: TcpConnection) -> None: ...
    def on_stream_error(self, error: SipParseError, peer: Peer, conn: TcpConnection) -> None: ...
    def on_send_failed(self, tx_ids: list[str]) -> None: ...


class UdpEndpoint(asyncio.DatagramProtocol):
    """One UDP socket (one address family)."""

    def __init__(self, receiver: Receiver, family: int = socket.AF_INET) -> None:
        self._receiver = receiver
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None
        self._send_error: Exception | None = None
        self._peers = PeerTable()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop: not a subclass
        sock = transport.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            # Room for bursts (a fan-out, or a flood the rate limiter must still see);
            # the kernel caps this at net.core.rmem_max / wmem_max.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = addr[0], addr[1]
        assert isinstance(host, str) and isinstance(port, int)
        self._receiver.on_datagram(data, self._peers.get("udp", host, port))

    def error_received(self, exc: Exception) -> None:
        # asyncio reports a failed immediate sendto here instead of raising it.
        self._send_error = exc
        log.debug("UDP error: %s", exc)

    def send(self, data: bytes, host: str, port: int) -> None:
        """Send one datagram. Raises SendError when the socket is closed, `host` is
        not an address of this socket's family, or the kernel refuses it."""
        if self.transport is None or self.transport.is_closing():
            raise SendError("the UDP socket is closed")
        if address_family(host) != self.family:
            raise SendError(
                f"cannot send to {host!r} from this socket (address family {self.family})"
            )
        self._send_error = None
        try:
            self.transport.sendto(data, (host, port))
        except (OSError, ValueError) as exc:  # uvloop raises where asyncio reports
            raise SendError(f"UDP send to {host}:{port} failed: {exc}") from exc
        error, self._send_error = self._send_error, None
        if error is not None:
            raise SendError(f"UDP send to {host}:{port} failed: {error}") from error


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """Bounds on TCP connections (counts, seconds, bytes)."""

    max_connections: int = 1024  # inbound and outbound together
    max_per_source: int = 32  # inbound from one IP address
    idle_timeout: float = 300.0  # no byte either way for this long: closed
    message_deadline: float = 10.0  # a message begun must be complete within this
    connect_timeout: float = 5.0  # an outbound connect that takes longer has failed
    max_write_buffer: int = 1 << 20  # bytes queued for a peer that does not read
    stream: Limits = field(default_factory=lambda: Limits(max_body_bytes=256 << 10))
    sweep_interval: float = 1.0  # how often idle and half-sent connections are looked for


class TcpConnection(asyncio.Protocol):
    """One TCP connection (TLS when its pool has contexts), framed by Content-Length;
    writes are buffered by asyncio up to `TcpLimits.max_write_buffer`. An inbound
    TLS connection is counted from the TCP accept and handshakes through a
    `tls.ServerSession` within the message deadline, so a handshake that never ends
    is bounded like a silent TCP connection (per source, in total, in time)."""

    def __init__(self, pool: TcpPool, outbound: bool) -> None:
        self._pool, self.outbound = pool, outbound
        self._framer = StreamFramer(pool.limits.stream)
        self.transport: asyncio.Transport | None = None
        self.peer = Peer(pool.transport, "", 0)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_tx: list[str] = []  # transactions waiting for the connect
        self.last_activity = pool.now()
        self.message_started: float | None = None  # when a partial message began
        self.close_reason = "peer"
        self._tls: ServerSession | None = None  # inbound TLS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: not a subclass
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(self._pool.transport, host, port)
        self.last_activity = self._pool.now()
        if not self.outbound:  # its first message is due within the deadline too
            self.message_started = self.last_activity
        if not self._pool.opened(self):
            self.transport.close()
            return
        if not self.outbound and self._pool.server_ssl is not None:
            self._tls = ServerSession(self._pool.server_ssl)
            return
        if self._pending:
            self.transport.writelines(self._pending)
            self._pending.clear()
        self._pending_tx.clear()
        self._pending_bytes = 0

    def data_received(self, data: bytes) -> None:
        now = self._pool.now()
        self.last_activity = now
        if self._tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            self._pool.receiver.on_stream_error(exc, self.peer, self)
            self.close("parse_error")
            return
        if self._framer.buffered == 0:
            self.message_started = None
        elif self.message_started is None or messages:
            self.message_started = now
        for message in messages:
            self._pool.receiver.on_stream_message(message, self.peer, self)

    def _decrypt(self, data: bytes) -> bytes:
        """The application bytes of TLS records from the peer; b"" when there are none
        yet or the connection failed (then it is closed)."""
        tls = self._tls
        assert tls is not None and self.transport is not None
        established = tls.established
        try:
            plain = tls.receive(data)
        except ssl.SSLError as exc:
            log.debug("TLS with %s failed: %s", self.peer, exc)
            self.transport.write(tls.outgoing())  # the alert, if any
            self.close("parse_error" if established else "handshake")
            return b""
        out = tls.outgoing()
        if not established and tls.established and self._pending:
            out += tls.send(b"".join(self._pending))
            self._pending.clear()
            self._pending_tx.clear()
            self._pending_bytes = 0
        if out:
            self.transport.write(out)
        return plain

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._pool.forget(self)

    def write(self, data: bytes, tx_id: str = "") -> None:
        """Queue `data`; raises SendError when the connection is closing or its
        peer has left more than `max_write_buffer` bytes unread (then it is closed)."""
        tls = self._tls
        if self.transport is None or (tls is not None and not tls.established):  # connecting
            if self._pending_bytes + len(data) > self._pool.limits.max_write_buffer:
                raise SendError("too much queued for a TCP connection still being opened")
            self._pending.append(data)
            self._pending_bytes += len(data)
            if tx_id:
                self._pending_tx.append(tx_id)
            return
        if self.transport.is_closing():
            raise SendError(f"TCP connection to {self.peer.host}:{self.peer.port} is closing")
        if self.transport.get_write_buffer_size() + len(data) > self._pool.limits.max_write_buffer:
            self.close("write_buffer")
            raise SendError(f"TCP peer {self.peer.host}:{self.peer.port} is not reading")
        self.last_activity = self._pool.now()
        if tls is not None:
            try:
                data = tls.send(data)
            except ssl.SSLError as exc:  # the session ended (e.g. the peer's close_notify)
                self.close("peer")
                raise SendError(f"TLS to {self.peer.host}:{self.peer.port}: {exc}") from exc
        self.transport.write(data)

    def connect_failed(self) -> list[str]:
        """The transactions whose data was waiting for a connect that failed."""
        tx_ids, self._pending_tx = self._pending_tx, []
        self._pending.clear()
        self._pending_bytes = 0
        return tx_ids

    def close(self, reason: str = "shutdown") -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.close_reason = reason
            self.transport.close()


class TcpPool:
    """TCP connections by remote (host, port), inbound and outbound alike: a response
    to a request that came over TCP goes back on the same connection. Enforces
    `TcpLimits` and counts connections in the node metrics."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        receiver: Receiver,
        metrics: NodeMetrics,
        limits: TcpLimits | None = None,
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        peer_ssl: ssl.SSLContext | None = None,
    ) -> None:
        """A TCP pool, or a TLS one (transport "tls") when given `server_ssl` for
        inbound and `client_ssl` for outbound connections (RFC 3261 26.2);
        `peer_ssl` (default `client_ssl`) for outbound connections to `exempt`
        hosts, the fleet's other servers."""
        self._loop, self.receiver, self._metrics = loop, receiver, metrics
        self.limits = limits or TcpLimits()
        self.server_ssl, self.client_ssl = server_ssl, client_ssl
        self.peer_ssl = peer_ssl or client_ssl
        self.transport = "tcp" if server_ssl is None and client_ssl is None else "tls"
        self._gauge = (
            metrics.tcp_connections if self.transport == "tcp" else metrics.tls_connections
        )
        self._by_addr: dict[tuple[str, int], TcpConnection] = {}
        self._all: set[TcpConnection] = set()
        self._per_source: dict[str, int] = {}
        self.exempt: frozenset[str] = frozenset()  # sources without a per-source cap
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def now(self) -> float:
        return self._loop.time()

    def __len__(self) -> int:
        """Open (or opening) connections."""
        return len(self._all)

    def inbound(self) -> TcpConnection:
        """Protocol factory for the listening sockets."""
        return TcpConnection(self, outbound=False)

    def send(
        self, host: str, port: int, data: bytes, tx_id: str = "", *, connect: bool = True
    ) -> None:
        """Send on the connection to (host, port), opening one if there is none
        (unless `connect` is False: then SendError).
        Raises SendError at once when it cannot be sent; a connect that fails
        later is reported to the receiver's `on_send_failed` with the transactions
        whose data was waiting for it."""
        conn = self._by_addr.get((host, port))
        if conn is None:
            if not connect:
                raise SendError(f"no open TCP connection to {host}:{port}")
            if self._closed:
                raise SendError("the TCP pool is closed")
            if address_family(host) is None:
                raise SendError(f"cannot connect to {host!r}: not an IP address")
            if len(self._all) >= self.limits.max_connections:
                self._metrics.tcp_refused.labels("total").inc()
                raise SendError(f"{len(self._all)} TCP connections open: no room for another")
            conn = TcpConnection(self, outbound=True)
            self._by_addr[(host, port)] = conn
            self._all.add(conn)
            self._loop.create_task(self._connect(conn, host, port))
        conn.write(data, tx_id)

    async def _connect(self, conn: TcpConnection, host: str, port: int) -> None:
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                if self.client_ssl is None:
                    await self._loop.create_connection(lambda: conn, host, port)
                else:  # a member's certificate must name the address (IP SAN)
                    await self._loop.create_connection(
                        lambda: conn,
                        host,
                        port,
                        ssl=self.peer_ssl if host in self.exempt else self.client_ssl,
                        server_hostname=host,
                        ssl_handshake_timeout=self.handshake_timeout,
                    )
        except OSError as exc:  # TimeoutError and ssl.SSLError included
            log.info("TCP connect to %s:%d failed: %s", host, port, exc or "timed out")
            self._metrics.tcp_closed.labels("connect_failed").inc()
            self.forget(conn)
            tx_ids = conn.connect_failed()
            if tx_ids:
                self.receiver.on_send_failed(tx_ids)

    @property
    def handshake_timeout(self) -> float:
        """Seconds an outbound TLS handshake may take: the message deadline."""
        return self.limits.message_deadline

    def opened(self, conn: TcpConnection) -> bool:
        """A connection is up; False when it must be refused (over a limit)."""
        if not conn.outbound:
            source = conn.peer.host
            if len(self._all) >= self.limits.max_connections:
                self._metrics.tcp_refused.labels("total").inc()
                conn.close_reason = "refused"
                return False
            if (
                self._per_source.get(source, 0) >= self.limits.max_per_source
                and source not in self.exempt
            ):
                self._metrics.tcp_refused.labels("per_source").inc()
                conn.close_reason = "refused"
                return False
            self._per_source[source] = self._per_source.get(source, 0) + 1
            self._all.add(conn)
        self._by_addr.setdefault((conn.peer.host, conn.peer.port), conn)
        self._gauge.set(len(self._all))
        self._arm_sweeper()
        return True

    def forget(self, conn: TcpConnection) -> None:
        """A connection is gone (closed by either side, or never opened)."""
        if conn not in self._all:
            return
        self._all.discard(conn)
        if not conn.outbound:
            count = self._per_source.get(conn.peer.host, 0) - 1
            if count > 0:
                self._per_source[conn.peer.host] = count
            else:
                self._per_source.pop(conn.peer.host, None)
        for key, value in list(self._by_addr.items()):
            if value is conn:
                del self._by_addr[key]
        if conn.close_reason != "refused":
            self._metrics.tcp_closed.labels(conn.close_reason).inc()
        self._gauge.set(len(self._all))

    def _arm_sweeper(self) -> None:
        if self._sweeper is None and not self._closed:
            self._sweeper = self._loop.call_later(self.limits.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle too long or with a message half-sent too long."""
        self._sweeper = None
        now = self.now()
        for conn in list(self._all):
            if conn.message_started is not None and (
                now - conn.message_started > self.limits.message_deadline
            ):
                conn.close("half_sent")
            elif now - conn.last_activity > self.limits.idle_timeout:
                conn.close("idle")
        if self._all:
            self._arm_sweeper()

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._all):
            conn.close("shutdown")


def listen_hosts(host: str) -> list[str]:
    """The addresses to listen on for `host`: it, and its other-family twin for
    loopback and unspecified addresses (127.0.0.1 <-> ::1, 0.0.0.0 <-> ::), so
    IPv6 members can join an IPv4-configured server and the other way round."""
    twins = {"127.0.0.1": "::1", "::1": "127.0.0.1", "0.0.0.0": "::", "::": "0.0.0.0"}
    twin = twins.get(host)
    return [host] if twin is None else [host, twin]
