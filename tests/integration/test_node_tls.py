"""sipfleet-node over TLS (RFC 3261 26.2, 18; sips:): a member on a TLS connection joins,
is answered at a `sips:` Contact, gets the group's messages over its connection, and
keeps its dialog and connection while the certificate is rotated under the server;
new connections get the new certificate. Certificates are made at test time."""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
from pathlib import Path

from node_harness import Fleet, NodeProc, eventually, free_ports
from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.sip import SipRequest, SipResponse, StreamFramer
from tls_certs import TestCa, client_context, pem_to_der, served_certificate, sip_and_tls_ports

GROUP = "sip:conf1@example.com"
HOST = "127.0.0.71"
NODE1 = "127.0.0.75"


class TlsMember:
    """A member with one TLS connection to the server (a hand-written UA: the point is
    to watch the connection itself; real phones over TLS are in ua/test_ua_tls.py)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.call_id = f"{secrets.token_hex(6)}@{name}"
        self.tag = secrets.token_hex(4)
        self.got: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.framer = StreamFramer()
        self.remote_tag = ""
        self.cseq = 1

    async def connect(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host
        )
        self.local_port = self.writer.get_extra_info("sockname")[1]
        self.cert = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            for message in self.framer.feed(data):
                self.got.put_nowait(message)

    def send(self, method: str, uri: str, extra: str = "", body: str = "") -> None:
        to_tag = f";tag={self.remote_tag}" if self.remote_tag and method != "INVITE" else ""
        text = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS 127.0.0.1:{self.local_port};branch=z9hG4bK{secrets.token_hex(6)}"
            ";rport\r\n"
            f"From: <sip:{self.name}@example.com>;tag={self.tag}\r\n"
            f"To: <{GROUP}>{to_tag}\r\nCall-ID: {self.call_id}\r\n"
            f"CSeq: {self.cseq} {method}\r\n"
            f"Contact: <sips:{self.name}@127.0.0.1:{self.local_port}>\r\n"
            f"Max-Forwards: 70\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}"
        )
        self.cseq += 1
        self.writer.write(text.encode())

    async def next(self, kind: type, timeout: float = 10.0) -> SipRequest | SipResponse:
        while True:
            message = await asyncio.wait_for(self.got.get(), timeout)
            if isinstance(message, kind):
                return message

    async def join(self, uri: str) -> SipResponse:
        self.send("INVITE", uri)
        while True:
            response = await self.next(SipResponse)
            assert isinstance(response, SipResponse)
            if response.status >= 200:
                break
        assert response.status == 200, response
        self.remote_tag = response.to_tag or ""
        contact = response.headers.get("Contact") or ""
        self.target = contact.split("<", 1)[1].split(">", 1)[0]
        self.send("ACK", self.target)
        self.cseq -= 1
        return response

    def answer(self, request: SipRequest, status: int = 200) -> None:
        lines = [f"SIP/2.0 {status} OK"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            lines += [f"{name}: {v}" for v in request.headers.get_list(name)]
        self.writer.write(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())

    def close(self) -> None:
        self._reader.cancel()
        self.writer.close()


async def tls_server(fleet: Fleet, ca: TestCa, name: str = "main") -> tuple[NodeProc, int, Path]:
    """A main server with a certificate for HOST, mounted like a Secret: the files are
    reached through a `..data` symlink that an update swaps (as the kubelet does)."""
    crt, _ = ca.issue("v1", (HOST,))
    mount = ca.dir / "mount"
    mount.mkdir()
    (mount / "..data").symlink_to(crt.parent)
    for file in ("tls.crt", "tls.key"):
        (mount / file).symlink_to(Path("..data") / file)
    (tls_port,) = free_ports(HOST, 1)
    node = await fleet.start(
        name, HOST, "main",
        "--tls-cert-file", str(mount / "tls.crt"), "--tls-key-file", str(mount / "tls.key"),
        "--tls-port", str(tls_port), "--tls-ca-file", str(ca.cert),
    )  # fmt: skip
    async with node.client() as client:
        await client.ensure_shard(GROUP, 10)  # open: no credentials file
    return node, tls_port, mount


def rotate(ca: TestCa, mount: Path, version: str) -> Path:
    """Issue a new certificate and swap the mount's `..data` link to it in one rename,
    as the kubelet updates a Secret volume. Returns the new tls.crt."""
    crt, _ = ca.issue(version, (HOST,))
    link = mount / "..data_tmp"
    link.symlink_to(crt.parent)
    os.replace(link, mount / "..data")
    return crt


async def udp_sender_message(node: NodeProc, text: str) -> None:
    """A UDP member joins, posts `text` to the group and leaves (BYE)."""
    loop = asyncio.get_running_loop()
    got: asyncio.Queue[bytes] = asyncio.Queue()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    call, tag = secrets.token_hex(6), secrets.token_hex(4)

    def send(method: str, cseq: int, body: str = "", to_tag: str = "") -> None:
        extra = "Content-Type: text/plain\r\n" if body else ""
        to = f";tag={to_tag}" if to_tag else ""
        transport.sendto(
            (
                f"{method} {GROUP.replace('example.com', node.target)} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
                f"From: <sip:carol@example.com>;tag={tag}\r\nTo: <{GROUP}>{to}\r\n"
                f"Call-ID: {call}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:carol@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\n"
                f"{extra}Content-Length: {len(body)}\r\n\r\n{body}"
            ).encode(),
            (node.host, node.sip_port),
        )

    try:
        send("INVITE", 1)
        while b" 200 " not in (first := await asyncio.wait_for(got.get(), 10)).split(b"\r\n")[0]:
            pass
        to_tag = first.split(b"To: ", 1)[1].split(b"tag=", 1)[1].split(b"\r\n", 1)[0].decode()
        send("ACK", 1, to_tag=to_tag)
        send("MESSAGE", 2, text, to_tag=to_tag)
        while b"CSeq: 2 MESSAGE" not in (answer := await asyncio.wait_for(got.get(), 10)):
            pass
        assert answer.startswith(b"SIP/2.0 200"), answer
        send("BYE", 3, to_tag=to_tag)  # carol leaves
        while b"CSeq: 3 BYE" not in await asyncio.wait_for(got.get(), 10):
            pass
    finally:
        transport.close()


async def test_tls_member_joins_at_sips_and_gets_group_messages(
    fleet: Fleet, tmp_path: Path
) -> None:
    ca = TestCa(tmp_path / "ca")
    node, tls_port, _ = await tls_server(fleet, ca)
    alice = TlsMember("alice")
    await alice.connect(HOST, tls_port, client_context(ca))
    try:
        ok = await alice.join(f"sips:conf1@{HOST}:{tls_port}")
        assert ok.headers.get("Via", "").startswith("SIP/2.0/TLS"), ok
        assert alice.target == f"sips:conf1-main@{HOST}:{tls_port}", ok  # stays on TLS
        await eventually(lambda: _members(node, 1), what="alice joined")
        await udp_sender_message(node, "over udp, to tls")
        message = await alice.next(SipRequest)
        assert isinstance(message, SipRequest) and message.method == "MESSAGE", message
        assert (message.headers.get("Via") or "").startswith("SIP/2.0/TLS "), message
        assert b"over udp, to tls" in message.body
        alice.answer(message)
        metrics = await node.metrics()
        assert metrics["sipfleet_node_tls_connections"] >= 1
    finally:
        alice.close()


async def test_certificate_rotation_keeps_the_dialog_and_serves_the_new_certificate(
    fleet: Fleet, tmp_path: Path
) -> None:
    ca = TestCa(tmp_path / "ca")
    node, tls_port, mount = await tls_server(fleet, ca)
    v1 = pem_to_der(mount / "tls.crt")
    alice = TlsMember("alice")
    await alice.connect(HOST, tls_port, client_context(ca))
    try:
        await alice.join(f"sips:conf1@{HOST}:{tls_port}")
        await eventually(lambda: _members(node, 1), what="alice joined")
        assert alice.cert == v1

        v2 = pem_to_der(rotate(ca, mount, "v2"))
        assert v2 != v1

        async def new_connections_get_v2() -> bool:
            return await asyncio.to_thread(served_certificate, HOST, tls_port, ca) == v2

        await eventually(new_connections_get_v2, 15, "the new certificate on new connections")
        # The dialog and its connection survived: a group message still reaches alice
        # on the connection she opened before the rotation, and she can still post.
        await udp_sender_message(node, "after rotation")
        message = await alice.next(SipRequest)
        assert isinstance(message, SipRequest) and b"after rotation" in message.body
        alice.answer(message)
        alice.send("MESSAGE", alice.target, "Content-Type: text/plain\r\n", "still here")
        response = await alice.next(SipResponse)
        assert isinstance(response, SipResponse) and response.status == 200, response
        assert await node.members(GROUP) == 1

        # A pair that does not match is refused: the server keeps serving v2.
        bad_crt, _ = ca.issue("v3", (HOST,))
        broken = ca.dir / "broken"
        broken.mkdir()
        (broken / "tls.crt").write_bytes(bad_crt.read_bytes())
        (broken / "tls.key").write_bytes((ca.dir / "v1" / "tls.key").read_bytes())
        link = mount / "..data_tmp"
        link.symlink_to(broken)
        os.replace(link, mount / "..data")
        await asyncio.sleep(3)  # more than one reload period
        assert await asyncio.to_thread(served_certificate, HOST, tls_port, ca) == v2
        assert "not reloaded" in node.log.read_text()
    finally:
        alice.close()


async def test_handshakes_are_bounded_like_tcp_connections(fleet: Fleet, tmp_path: Path) -> None:
    """Peers that open TCP to the TLS port and never finish a handshake count as
    connections from the accept: the 33rd from one source is refused at once (32 per
    source), the others are closed after the message deadline (TcpLimits, 10 s)."""
    ca = TestCa(tmp_path / "ca")
    node, tls_port, _ = await tls_server(fleet, ca)
    silent = [await asyncio.open_connection(HOST, tls_port) for _ in range(32)]
    try:

        async def counted() -> bool:
            return (await node.metrics())["sipfleet_node_tls_connections"] == 32

        await eventually(counted, what="32 half-open TLS connections counted")
        reader, writer = await asyncio.open_connection(HOST, tls_port)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # the 33rd: refused at once
        writer.close()
        assert await asyncio.wait_for(silent[0][0].read(), 20) == b""  # the deadline
        await eventually(lambda: _metric_is(node, "sipfleet_node_tls_connections", 0), 5, "gone")
        metrics = await node.metrics()
        assert metrics['sipfleet_node_tcp_refused_total{reason="per_source"}'] == 1
        assert metrics['sipfleet_node_tcp_closed_total{reason="half_sent"}'] == 32
    finally:
        for _, w in silent:
            w.close()


async def _members(node: NodeProc, count: int) -> bool:
    return await node.members(GROUP) == count


async def test_servers_talk_to_each_other_over_tls(fleet: Fleet, tmp_path: Path) -> None:
    """--s2s-transport tls: a message posted on node1 reaches a member of main through
    the distribution tree, and every server-to-server request went over TLS."""
    ca = TestCa(tmp_path / "ca")
    servers: list[NodeProc] = []
    for name, host, role in (("main", HOST, "main"), ("node1", NODE1, "node")):
        crt, key = ca.issue(name, (host,))
        sip, tls = sip_and_tls_ports(host)
        server = await fleet.start(
            name, host, role,
            "--sip-port", str(sip), "--tls-port", str(tls),  # the last --sip-port wins
            "--tls-cert-file", str(crt), "--tls-key-file", str(key),
            "--tls-ca-file", str(ca.cert), "--s2s-transport", "tls",
        )  # fmt: skip
        server.sip_port = sip
        servers.append(server)
    main, node1 = servers
    shards = []
    for server in servers:
        async with server.client() as client:
            shards.append(await client.ensure_shard(GROUP, 10))
    table = {
        GROUP: [
            RouteEntry(s.name, shard.uri, "active", 10)
            for s, shard in zip(servers, shards, strict=True)
        ]
    }
    for server in servers:
        async with server.client() as client:
            await client.put_routes(1, table)
    alice = TlsMember("alice")
    await alice.connect(HOST, main.sip_port + 1, client_context(ca))
    try:
        await alice.join(f"sips:conf1@{HOST}:{main.sip_port + 1}")
        await eventually(lambda: _members(main, 1), what="alice on main")
        await udp_sender_message(node1, "from node1 over tls")  # carol joins node1, posts
        message = await alice.next(SipRequest)
        assert isinstance(message, SipRequest) and b"from node1 over tls" in message.body
        alice.answer(message)
        for server in servers:
            metrics = await server.metrics()
            assert metrics["sipfleet_node_tls_connections"] >= 1, server.name
            assert metrics["sipfleet_node_tcp_connections"] == 0, server.name  # none in clear
    finally:
        alice.close()


async def _metric_is(node: NodeProc, name: str, value: float) -> bool:
    return (await node.metrics()).get(name) == value


async def test_clear_text_on_the_tls_port_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    """A SIP request in clear text to the TLS port fails the handshake: the connection
    is closed, counted, and the server goes on serving TLS."""
    ca = TestCa(tmp_path / "ca")
    node, tls_port, _ = await tls_server(fleet, ca)
    reader, writer = await asyncio.open_connection(HOST, tls_port)
    writer.write(b"OPTIONS sip:conf1@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    assert b"SIP/2.0" not in answer  # at most a TLS alert, never a SIP answer in clear
    writer.close()
    metrics = await node.metrics()
    assert metrics['sipfleet_node_tcp_closed_total{reason="handshake"}'] == 1
    alice = TlsMember("alice")
    await alice.connect(HOST, tls_port, client_context(ca))
    try:
        await alice.join(f"sips:conf1@{HOST}:{tls_port}")
    finally:
        alice.close()
