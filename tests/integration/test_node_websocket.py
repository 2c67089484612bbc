"""sipfleet-node over WebSocket (RFC 7118): a client speaking SIP over `ws` and `wss`
(aiohttp's WebSocket client, the way JsSIP and SIP.js use a browser's) joins a group,
receives the group's messages over its socket and posts to the group; the server
refuses a handshake without the `sip` subprotocol and bounds message sizes."""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
from node_harness import Fleet, NodeProc, eventually, free_ports
from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.sip import SipRequest, SipResponse, parse_message
from test_node_tls import GROUP, udp_sender_message
from tls_certs import TestCa, client_context

HOST = "127.0.0.72"
NODE1 = "127.0.0.76"


class WsMember:
    """A browser-style SIP UA: one WebSocket, a `.invalid` Via host and Contact."""

    def __init__(self, name: str, ws: aiohttp.ClientWebSocketResponse, transport: str) -> None:
        self.name, self.ws, self.transport = name, ws, transport
        self.host = f"{secrets.token_hex(5)}.invalid"
        self.call_id = f"{secrets.token_hex(6)}@{self.host}"
        self.tag = secrets.token_hex(4)
        self.cseq = 1
        self.remote_tag = ""
        self.target = ""

    async def send(self, method: str, uri: str, extra: str = "", body: str = "") -> None:
        to_tag = f";tag={self.remote_tag}" if self.remote_tag else ""
        await self.ws.send_str(
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{self.transport.upper()} {self.host}"
            f";branch=z9hG4bK{secrets.token_hex(6)}\r\n"
            f"From: <sip:{self.name}@example.com>;tag={self.tag}\r\n"
            f"To: <{GROUP}>{to_tag}\r\nCall-ID: {self.call_id}\r\n"
            f"CSeq: {self.cseq} {method}\r\n"
            f"Contact: <sip:{self.name}@{self.host};transport={self.transport}>\r\n"
            f"Max-Forwards: 70\r\n{extra}Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )
        if method != "ACK":
            self.cseq += 1

    async def next(self, kind: type, timeout: float = 10.0) -> SipRequest | SipResponse:
        while True:
            frame = await self.ws.receive(timeout)
            assert frame.type == aiohttp.WSMsgType.TEXT, frame
            message = parse_message(frame.data.encode())
            if isinstance(message, kind):
                return message

    async def join(self, uri: str) -> SipResponse:
        await self.send("INVITE", uri)
        while True:
            response = await self.next(SipResponse)
            assert isinstance(response, SipResponse)
            if response.status >= 200:
                break
        assert response.status == 200, response
        self.remote_tag = response.to_tag or ""
        self.target = (response.headers.get("Contact") or "").split("<", 1)[1].split(">", 1)[0]
        self.cseq -= 1
        await self.send("ACK", self.target)
        self.cseq += 1
        return response

    async def answer(self, request: SipRequest) -> None:
        lines = ["SIP/2.0 200 OK"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            lines += [f"{name}: {v}" for v in request.headers.get_list(name)]
        await self.ws.send_str("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n")


async def ws_server(fleet: Fleet, tmp: Path) -> tuple[NodeProc, int, int, TestCa]:
    """A main server with ws and wss listeners (wss with a test certificate)."""
    ca = TestCa(tmp / "ca")
    crt, key = ca.issue("server", (HOST,))
    tls_port, ws_port, wss_port = free_ports(HOST, 3)
    node = await fleet.start(
        "main", HOST, "main",
        "--tls-cert-file", str(crt), "--tls-key-file", str(key), "--tls-port", str(tls_port),
        "--ws-port", str(ws_port), "--wss-port", str(wss_port),
    )  # fmt: skip
    async with node.client() as client:
        await client.ensure_shard(GROUP, 10)  # open: no credentials file
    return node, ws_port, wss_port, ca


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_websocket_member_joins_and_chats(fleet: Fleet, tmp_path: Path, scheme: str) -> None:
    node, ws_port, wss_port, ca = await ws_server(fleet, tmp_path)
    port = ws_port if scheme == "ws" else wss_port
    context: ssl.SSLContext | bool = client_context(ca) if scheme == "wss" else False
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{scheme}://{HOST}:{port}/", protocols=("sip",), ssl=context) as ws,
    ):
        assert ws.protocol == "sip"  # RFC 7118 4.1
        alice = WsMember("alice", ws, scheme)
        ok = await alice.join(f"sip:conf1@{HOST}")
        assert ok.headers.get("Via", "").startswith(f"SIP/2.0/{scheme.upper()} "), ok
        assert alice.target == f"sip:conf1-main@{HOST}:{port};transport={scheme}", ok
        await eventually(lambda: _members(node, 1), what="alice joined over " + scheme)

        await udp_sender_message(node, "to the browser")  # carol, over UDP
        message = await alice.next(SipRequest)
        assert isinstance(message, SipRequest) and message.method == "MESSAGE", message
        assert (message.headers.get("Via") or "").startswith(f"SIP/2.0/{scheme.upper()} ")
        assert b"to the browser" in message.body
        await alice.answer(message)

        await alice.send("MESSAGE", alice.target, "Content-Type: text/plain\r\n", "from ws")
        response = await alice.next(SipResponse)
        assert isinstance(response, SipResponse) and response.status == 200, response
        metrics = await node.metrics()
        assert metrics["sipfleet_node_ws_connections"] == 1
        assert metrics["sipfleet_node_messages_in_total"] == 2  # carol's and alice's

        await alice.send("BYE", alice.target)
        bye = await alice.next(SipResponse)
        assert isinstance(bye, SipResponse) and bye.status == 200, bye
    await eventually(lambda: _members(node, 0), what="alice left")


async def test_websocket_bounds(fleet: Fleet, tmp_path: Path) -> None:
    node, ws_port, _, _ = await ws_server(fleet, tmp_path)
    url = f"http://{HOST}:{ws_port}/"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, protocols=("chat",))
        assert refused.value.status == 400  # no `sip` subprotocol: refused (RFC 7118 4.1)
        async with session.ws_connect(url, protocols=("sip",)) as ws:
            await ws.send_str("X" * (400 << 10))  # more than a SIP message may be
            frame = await ws.receive(10)
            assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), frame
        async with session.ws_connect(url, protocols=("sip",)) as ws:
            await ws.send_str("garbage that is not SIP\r\n\r\n")
            await ws.send_str("\r\n\r\n")  # a keepalive (RFC 7118 does not define one): ignored
            assert not ws.closed
    await eventually(lambda: _metric_zero(node, "sipfleet_node_ws_connections"), what="closed")
    assert (await node.metrics())["sipfleet_node_parse_errors_total"] >= 1


def same_free_ports(hosts: tuple[str, ...], count: int) -> list[int]:
    """`count` ports free on every host of `hosts`, the first for UDP and TCP (SIP), the
    others for TCP (TLS, ws, wss): every server of a fleet has its TLS and WebSocket
    ports as far above its SIP port (docs/transport.md)."""
    for _ in range(50):
        ports = free_ports(hosts[0], count)
        try:
            for host in hosts[1:]:
                with contextlib.ExitStack() as stack:
                    udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    udp.bind((host, ports[0]))
                    for port in ports:
                        stack.enter_context(socket.socket()).bind((host, port))
        except OSError:
            continue
        return ports
    raise RuntimeError(f"no {count} ports free on all of {hosts}")


async def full_main_and_node(
    fleet: Fleet, tmp: Path, scheme: str = "ws"
) -> tuple[NodeProc, NodeProc, int, TestCa]:
    """(main, node1, ws or wss port, CA): main with room for one member, node1 for ten,
    both with SIP, TLS and `scheme` at the same ports (on two hosts, certificates from
    the CA) and the group's routes."""
    ca = TestCa(tmp / "ca")
    sip, tls_port, ws_port = same_free_ports((HOST, NODE1), 3)
    servers: list[NodeProc] = []
    shards = []
    for name, host, role, capacity in (("main", HOST, "main", 1), ("node1", NODE1, "node", 10)):
        crt, key = ca.issue(name, (host,))
        server = await fleet.start(
            name, host, role, "--sip-port", str(sip),  # the last --sip-port wins
            "--tls-cert-file", str(crt), "--tls-key-file", str(key), "--tls-port", str(tls_port),
            f"--{scheme}-port", str(ws_port),
        )  # fmt: skip
        server.sip_port = sip
        servers.append(server)
        async with server.client() as client:
            shards.append(await client.ensure_shard(GROUP, capacity))
    table = {
        GROUP: [
            RouteEntry(s.name, shard.uri, "active", shard.capacity)
            for s, shard in zip(servers, shards, strict=True)
        ]
    }
    for server in servers:
        async with server.client() as client:
            await client.put_routes(1, table)
    return servers[0], servers[1], ws_port, ca


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_websocket_member_redirected_to_the_ws_port_of_a_node(
    fleet: Fleet, tmp_path: Path, scheme: str
) -> None:
    """The main server is full (capacity 1, alice over ws/wss): bob's INVITE over the
    same transport gets a 302 naming node1's ws (wss) URI (RFC 7118 5; the same port
    offset as main's), and bob joins node1 over a new WebSocket there and gets a
    message posted on main."""
    main, node1, ws_port, ca = await full_main_and_node(fleet, tmp_path, scheme)
    context: ssl.SSLContext | bool = client_context(ca) if scheme == "wss" else False
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{scheme}://{HOST}:{ws_port}/", protocols=("sip",), ssl=context
        ) as ws_main,
    ):
        alice = WsMember("alice", ws_main, scheme)
        await alice.join(f"sip:conf1@{HOST}")
        await eventually(lambda: _members(main, 1), what="alice filled main")

        bob_main = WsMember("bob", ws_main, scheme)  # bob asks main (on alice's socket)
        await bob_main.send("INVITE", f"sip:conf1@{HOST}")
        while True:
            redirect = await bob_main.next(SipResponse)
            assert isinstance(redirect, SipResponse)
            if redirect.status >= 200:
                break
        assert redirect.status == 302, redirect
        contact = redirect.headers.get("Contact") or ""
        node_uri = f"sip:conf1-node1@{NODE1}:{ws_port};transport={scheme}"
        assert contact == f"<{node_uri}>", contact

        async with session.ws_connect(
            f"{scheme}://{NODE1}:{ws_port}/", protocols=("sip",), ssl=context
        ) as ws_node:
            bob = WsMember("bob", ws_node, scheme)
            await bob.join(node_uri)
            assert bob.target == node_uri, bob.target
            await eventually(lambda: _members(node1, 1), what="bob joined node1")
            assert await main.members(GROUP) == 1

            await alice.send("MESSAGE", alice.target, "Content-Type: text/plain\r\n", "hi bob")
            message = await bob.next(SipRequest)
            assert isinstance(message, SipRequest) and message.method == "MESSAGE", message
            assert b"hi bob" in message.body
            await bob.answer(message)


async def _members(node: NodeProc, count: int) -> bool:
    return await node.members(GROUP) == count


async def _metric_zero(node: NodeProc, name: str) -> bool:
    return (await node.metrics())[name] == 0
