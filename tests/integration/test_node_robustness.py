"""Hostile input: the RFC 4475 torture messages, a flooding source, TCP garbage and
stalled TCP connections."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from pathlib import Path

from node_harness import RFC4475, Fleet, NodeProc

# First status line the server sends back for each torture message (None: no answer,
# as for the responses in the set). Syntax errors get the core's status; valid
# requests reach the application: no such group (404), OPTIONS (200), in-dialog
# request for an unknown dialog (481), methods a group server does not take (405).
EXPECTED: dict[str, int | None] = {
    # 3.1.1 valid
    "wsinv": 481,
    "intmeth": 501,
    "esc01": 404,
    "escnull": 405,
    "esc02": 501,
    "lwsdisp": 200,
    "longreq": 404,
    "dblreq": 405,
    "semiuri": 200,
    "transports": 200,
    "mpart01": 404,
    "unreason": None,
    "noreason": None,
    # 3.1.2 invalid
    "badinv01": 400,
    "clerr": 400,
    "scalar02": 400,
    "scalarlg": None,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": 404,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 501,
    "bigcode": None,
    "ncl": 400,
    # 3.2 transaction layer
    "badbranch": 400,
    # 3.3 application layer
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": 405,
    "bext01": 420,
    "invut": 415,
    "regaut01": 405,
    "multi01": 400,
    "mcl01": 400,
    "bcast": None,
    "zeromf": 200,
    "cparam01": 405,
    "cparam02": 405,
    "regescrt": 405,
    "sdp01": 406,
    # 3.4 backwards compatibility
    "inv2543": 404,
}
OPTIONS = (
    "OPTIONS sip:probe@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{n}\r\n"
    "From: <sip:probe@{me}>;tag={n}\r\nTo: <sip:probe@{host}>\r\nCall-ID: {n}@{me}\r\n"
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def udp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def first_lines(sock: socket.socket) -> list[str]:
    lines = []
    while True:
        try:
            lines.append(sock.recv(65535).split(b"\r\n", 1)[0].decode())
        except BlockingIOError:
            return lines


def options(node: NodeProc, sock: socket.socket, n: int) -> bytes:
    me = "{}:{}".format(*sock.getsockname())
    return OPTIONS.format(host=node.target, me=me, n=n).encode()


def call_id_of(data: bytes) -> str | None:
    for line in data.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"call-id", b"i"):
            return value.strip().decode(errors="replace")
    return None


async def test_rfc4475_torture_messages(fleet: Fleet) -> None:
    node = await fleet.start("main", "127.0.0.2", "main")
    files = sorted(RFC4475.glob("*.dat"))
    assert {f.stem for f in files} == set(EXPECTED)
    # Without rport a response goes to the source address at the Via's sent-by
    # port, 5060 unless given (quotbal says 5050) (RFC 3261 18.2.2); with rport,
    # to the source port (RFC 3581). Listen at all three, on a loopback address
    # of our own.
    source = "127.0.0.66"
    collectors = []
    for port in (5050, 5060):
        collectors.append(collector := socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        collector.bind((source, port))
        collector.setblocking(False)
    sockets, by_call_id = {}, {}
    for path in files:
        data = path.read_bytes()
        by_call_id[call_id_of(data)] = path.stem
        sockets[path.stem] = sock = udp_socket(source)
        sock.sendto(data, (node.host, node.sip_port))
    answers: dict[str, int | None] = dict.fromkeys(sockets)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        for name, sock in sockets.items():
            lines = first_lines(sock)
            if lines and answers[name] is None:
                answers[name] = int(lines[0].split()[1])
        for collector in collectors:
            while True:
                try:
                    data = collector.recv(65535)
                except BlockingIOError:
                    break
                name = by_call_id[call_id_of(data)]
                if answers[name] is None:  # a final non-2xx to an INVITE is retransmitted
                    answers[name] = int(data.split(b" ", 2)[1])
        if all(answers[n] is not None for n, status in EXPECTED.items() if status):
            break
    for sock in [*sockets.values(), *collectors]:
        sock.close()
    assert answers == EXPECTED
    # Still serving, and every rejected message was counted.
    probe = udp_socket("127.0.0.1")
    probe.sendto(options(node, probe, 1), (node.host, node.sip_port))
    await asyncio.sleep(0.3)
    assert first_lines(probe) == ["SIP/2.0 200 OK"]
    metrics = await node.metrics()
    syntax_errors = sum(1 for s in EXPECTED.values() if s in (400, 505, 416))
    assert metrics["sipfleet_node_parse_errors_total"] >= syntax_errors
    assert node.proc.poll() is None


async def test_flooding_source_is_limited_while_others_are_served(fleet: Fleet) -> None:
    node = await fleet.start(
        "main", "127.0.0.2", "main", "--rate-limit", "100", "--rate-burst", "50"
    )
    flooder, victim = udp_socket("127.0.0.5"), udp_socket("127.0.0.6")
    flood = [options(node, flooder, n) for n in range(3000)]
    answered = 0
    started = time.monotonic()
    for i, datagram in enumerate(flood):  # bounded: 3000 datagrams, a few seconds at most
        flooder.sendto(datagram, (node.host, node.sip_port))
        if i % 100 == 0:  # the other source asks politely 30 times meanwhile
            victim.sendto(options(node, victim, 100000 + i), (node.host, node.sip_port))
            await asyncio.sleep(0.02)
            answered += first_lines(victim).count("SIP/2.0 200 OK")
    await asyncio.sleep(0.5)
    answered += first_lines(victim).count("SIP/2.0 200 OK")
    flood_answers = len(first_lines(flooder))
    elapsed = time.monotonic() - started
    metrics = await node.metrics()
    assert answered == 30
    assert metrics["sipfleet_node_rate_limited_total"] > 1000
    # The flooder got at most its burst plus the refill over the run.
    assert flood_answers <= 50 + 100 * elapsed + 1
    assert node.proc.poll() is None


async def test_sigterm_stops_cleanly(fleet: Fleet) -> None:
    node = await fleet.start("main", "127.0.0.2", "main")
    node.proc.send_signal(signal.SIGTERM)
    for _ in range(50):
        if node.proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    assert node.proc.returncode == 0, node.log.read_text()
    assert "stopping: no more joins" in node.log.read_text()


async def test_tcp_requests_and_garbage(fleet: Fleet) -> None:
    node = await fleet.start("main", "127.0.0.2", "main")
    reader, writer = await asyncio.open_connection(node.host, node.sip_port)
    me = "{}:{}".format(*writer.get_extra_info("sockname"))
    request = OPTIONS.format(host=node.target, me=me, n=7).replace("UDP", "TCP")
    writer.write(b"\r\n\r\n" + request.encode())  # keepalive CRLFs, then a request
    assert await asyncio.wait_for(reader.readline(), 3) == b"SIP/2.0 200 OK\r\n"
    writer.close()
    # A header section that never ends: the connection is dropped at the limit.
    reader, writer = await asyncio.open_connection(node.host, node.sip_port)
    writer.write(b"OPTIONS sip:x@y SIP/2.0\r\nX: " + b"a" * 70000)
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the server
    writer.close()
    probe = udp_socket("127.0.0.1")
    probe.sendto(options(node, probe, 8), (node.host, node.sip_port))
    await asyncio.sleep(0.3)
    assert first_lines(probe) == ["SIP/2.0 200 OK"]
    assert (await node.metrics())["sipfleet_node_parse_errors_total"] == 1


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_stalled_tcp_connections_are_bounded_and_closed(fleet: Fleet) -> None:
    """Issue 8 item 8: 40 connections from one address, each stalled in the middle
    of a large message. At most 32 per source are kept (the rest refused), each
    holds at most the stream limit, and all are closed at the 10 s message
    deadline, counted by reason."""
    node = await fleet.start("main", "127.0.0.2", "main")
    before = rss_kib(node.proc.pid)
    head = (
        f"MESSAGE sip:x@{node.target} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKs\r\n"
        "Content-Length: 200000\r\n\r\n"
    ).encode()
    conns = []
    for _ in range(40):
        reader, writer = await asyncio.open_connection(node.host, node.sip_port)
        writer.write(head + b"x" * 150_000)
        conns.append((reader, writer))
    await asyncio.sleep(1.0)
    metrics = await node.metrics()
    assert metrics['sipfleet_node_tcp_refused_total{reason="per_source"}'] == 8
    assert metrics["sipfleet_node_tcp_connections"] == 32
    # 32 kept x 150 KB held each, plus interpreter slack: far from unbounded.
    assert rss_kib(node.proc.pid) - before < 32 * 1024
    started = time.monotonic()

    async def closed(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()

    await asyncio.wait_for(asyncio.gather(*(closed(r) for r, _ in conns)), 15.0)
    assert time.monotonic() - started < 12.0
    metrics = await node.metrics()
    assert metrics['sipfleet_node_tcp_closed_total{reason="half_sent"}'] == 32
    assert metrics["sipfleet_node_tcp_connections"] == 0
    for _, writer in conns:
        writer.close()
