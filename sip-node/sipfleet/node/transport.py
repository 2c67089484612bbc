"""asyncio adapters: a UDP endpoint and TCP connections (inbound and pooled outbound)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Protocol, cast

from sipfleet.node.sip import SipMessage, SipParseError, StreamFramer

log = logging.getLogger(__name__)

UDP_BUFFER = 4 << 20


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to; transport is "udp" or "tcp"."""

    transport: str
    host: str
    port: int


class Receiver(Protocol):
    def on_datagram(self, data: bytes, peer: Peer) -> None: ...
    def on_stream_message(self, message: SipMessage, peer: Peer, conn: TcpConnection) -> None: ...
    def on_stream_error(self, error: SipParseError, peer: Peer, conn: TcpConnection) -> None: ...


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self.transport: asyncio.DatagramTransport | None = None

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
        self._receiver.on_datagram(data, Peer("udp", host, port))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, (host, port))


class TcpConnection(asyncio.Protocol):
    """One TCP connection, framed by Content-Length; writes are buffered by asyncio."""

    def __init__(self, receiver: Receiver, pool: TcpPool) -> None:
        self._receiver, self._pool = receiver, pool
        self._framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer = Peer("tcp", "", 0)
        self._pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: not a subclass
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("tcp", host, port)
        self._pool.opened(self)
        if self._pending:
            self.transport.writelines(self._pending)
            self._pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            self._receiver.on_stream_error(exc, self.peer, self)
            self.close()
            return
        for message in messages:
            self._receiver.on_stream_message(message, self.peer, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._pool.forget(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
        else:
            self._pending.append(data)  # still connecting

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpPool:
    """TCP connections by remote (host, port), inbound and outbound alike: a response
    to a request that came over TCP goes back on the same connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        self._loop, self._receiver = loop, receiver
        self._by_addr: dict[tuple[str, int], TcpConnection] = {}
        self._all: set[TcpConnection] = set()

    def inbound(self) -> TcpConnection:
        conn = TcpConnection(self._receiver, self)
        self._all.add(conn)
        return conn

    def send(self, host: str, port: int, data: bytes) -> None:
        conn = self._by_addr.get((host, port))
        if conn is None:
            conn = TcpConnection(self._receiver, self)
            self._by_addr[(host, port)] = conn
            self._all.add(conn)
            self._loop.create_task(self._connect(conn, host, port))
        conn.write(data)

    async def _connect(self, conn: TcpConnection, host: str, port: int) -> None:
        try:
            await self._loop.create_connection(lambda: conn, host, port)
        except OSError as exc:
            log.warning("TCP connect to %s:%d failed: %s", host, port, exc)
            self.forget(conn)

    def opened(self, conn: TcpConnection) -> None:
        self._by_addr.setdefault((conn.peer.host, conn.peer.port), conn)

    def forget(self, conn: TcpConnection) -> None:
        self._all.discard(conn)
        for key, value in list(self._by_addr.items()):
            if value is conn:
                del self._by_addr[key]

    def close(self) -> None:
        for conn in list(self._all):
            conn.close()
