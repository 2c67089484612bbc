"""SIP over WebSocket (RFC 7118): `ws` and `wss` listeners for browser clients.

aiohttp serves the WebSocket handshake (RFC 6455) on its own port, apart from
the admin API. A client must offer the `sip` subprotocol (RFC 7118 4.1); each
WebSocket message, text or binary, carries exactly one SIP message (5.2) and
goes to the stack like a datagram. A WebSocket client cannot be connected to,
so every request for it goes back over its connection (5: its Contact has a
`.invalid` host); when that connection is gone the send fails.

Bounded like TCP (`transport.TcpLimits`): connections in total and per
source address, the size of one message (headers plus body), seconds without
a message, and the bytes queued for a client that does not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

from aiohttp import WSMsgType, web
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.transport import Peer, Receiver, SendError, TcpLimits

log = logging.getLogger(__name__)

SUBPROTOCOL = "sip"


class WsConnection:
    """One client's WebSocket: a queue of outgoing messages and its writer task."""

    def __init__(self, ws: web.WebSocketResponse, peer: Peer, limits: TcpLimits) -> None:
        self.ws, self.peer, self._limits = ws, peer, limits
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._queued = 0
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def write(self, data: bytes) -> None:
        """Queue one SIP message; raises SendError when the socket is closing or the
        client has left more than `max_write_buffer` bytes unread (then it is closed)."""
        if self.ws.closed:
            raise SendError(f"WebSocket to {self.peer.host}:{self.peer.port} is closed")
        if self._queued + len(data) > self._limits.max_write_buffer:
            self.close()
            raise SendError(f"WebSocket client {self.peer.host}:{self.peer.port} is not reading")
        self._queued += len(data)
        self._queue.put_nowait(data)

    async def _write_loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            while True:
                data = await self._queue.get()
                try:
                    await self.ws.send_str(data.decode())
                except UnicodeDecodeError:
                    await self.ws.send_bytes(data)
                self._queued -= len(data)

    def close(self) -> None:
        """Stop writing and close the socket (without waiting)."""
        self._writer.cancel()
        if not self.ws.closed:
            asyncio.get_running_loop().create_task(self.ws.close())


class WsPool:
    """The WebSocket connections of one transport ("ws" or "wss") by remote
    (host, port); `handle` is the aiohttp handler that accepts them."""

    def __init__(
        self,
        transport: str,
        receiver: Receiver,
        metrics: NodeMetrics,
        limits: TcpLimits | None = None,
    ) -> None:
        self.transport, self._receiver, self._metrics = transport, receiver, metrics
        self.limits = limits or TcpLimits()
        self._by_addr: dict[tuple[str, int], WsConnection] = {}
        self._per_source: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_addr)

    def send(
        self, host: str, port: int, data: bytes, tx_id: str = "", *, connect: bool = True
    ) -> None:
        """Send on the client's connection. Raises SendError when there is none (a
        WebSocket server cannot open one, RFC 7118 5) or it cannot take more."""
        conn = self._by_addr.get((host, port))
        if conn is None:
            raise SendError(f"no {self.transport} connection from {host}:{port}")
        conn.write(data)

    def _refused(self, host: str) -> str | None:
        if len(self._by_addr) >= self.limits.max_connections:
            return "total"
        if self._per_source.get(host, 0) >= self.limits.max_per_source:
            return "per_source"
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Accept a SIP WebSocket client (RFC 7118 4.1) and serve it until it leaves,
        stays silent for `idle_timeout` seconds, or breaks a bound."""
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        if SUBPROTOCOL not in (p.strip().lower() for p in offered.split(",")):
            raise web.HTTPBadRequest(text="the WebSocket subprotocol 'sip' is required (RFC 7118)")
        peername = request.transport.get_extra_info("peername") if request.transport else None
        if not peername:
            raise web.HTTPBadRequest(text="no peer address")
        peer = Peer(self.transport, peername[0], peername[1])
        reason = self._refused(peer.host)
        if reason is not None:
            self._metrics.tcp_refused.labels(reason).inc()
            log.info("WebSocket from %s refused: too many connections (%s)", peer.host, reason)
            raise web.HTTPServiceUnavailable(text="too many WebSocket connections")
        stream = self.limits.stream
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            max_msg_size=stream.max_head_bytes + stream.max_body_bytes,
            autoping=True,
        )
        await ws.prepare(request)
        conn = WsConnection(ws, peer, self.limits)
        key = (peer.host, peer.port)
        self._by_addr[key] = conn
        self._per_source[peer.host] = self._per_source.get(peer.host, 0) + 1
        self._metrics.ws_connections.inc()
        close_reason = "peer"
        try:
            while True:
                try:
                    message = await ws.receive(timeout=self.limits.idle_timeout)
                except TimeoutError:
                    close_reason = "idle"
                    break
                if message.type == WSMsgType.TEXT:
                    self._receiver.on_datagram(message.data.encode(), peer)
                elif message.type == WSMsgType.BINARY:
                    self._receiver.on_datagram(message.data, peer)
                else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. a message over max_msg_size)
                    if message.type == WSMsgType.ERROR:
                        close_reason = "parse_error"
                    break
        finally:
            del self._by_addr[key]
            count = self._per_source.pop(peer.host) - 1
            if count:
                self._per_source[peer.host] = count
            self._metrics.ws_connections.dec()
            self._metrics.tcp_closed.labels(close_reason).inc()
            conn.close()
        return ws

    def close(self) -> None:
        """Close every connection (shutdown)."""
        for conn in list(self._by_addr.values()):
            conn.close()


async def serve_ws(
    pool: WsPool, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Listen for WebSocket clients of `pool` at host:port (port 0: a free one),
    over TLS with `ssl_context` (wss). Returns the runner (clean it up to stop)
    and the port. Raises OSError when the port cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, reuse_port=False)
    app = web.Application()
    app.router.add_get("/", pool.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    return runner, sock.getsockname()[1]
