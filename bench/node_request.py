"""sip-node's whole request path per MESSAGE, in process: no sipp, no other process.

    .venv/bin/python bench/node_request.py [--messages 20000]   (SIPFLEET_PURE_PYTHON=1: pure core)

Starts one server (role main, uvloop) on 127.0.0.1, joins one member by INVITE,
then hands the server's SIP stack distinct out-of-dialog MESSAGEs from that member
to the group, as the benchmark's sipp load does, through the UDP endpoint's
`datagram_received` (as uvloop calls it): rate limit, parse, validate, transaction, the group
layer (admission, resolve, fan-out to nobody, the crash-recovery history), the 200
built and sent with sendto to the member's socket. Each batch of 100 is timed in
process CPU time; the member's socket is drained between batches, outside the
timing. Best and median of the batches' CPU us per MESSAGE are printed. The
garbage collector stays on, frozen once after the join as the runner does every
second. Unlike sip_bench.py's CPU per request, this leaves out the event loop (epoll,
recvmsg) and the cold caches of a server that other processes interrupt
between two requests, and other processes hardly disturb it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import statistics
import time

import uvloop
from sipfleet.node.config import Config
from sipfleet.node.node import Node
from sipfleet.node.sip import compiled

HOST = "127.0.0.1"
GROUP = "sip:bench@example.com"
BATCH = 100


def request(
    method: str, uri: str, port: int, n: int, extra: str = "", body: bytes = b"", to_tag: str = ""
) -> bytes:
    """A request from the member (user part `m`, at HOST:`port`) numbered `n`."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {HOST}:{port};branch=z9hG4bK-{n}-bench",
        f"From: <sip:m@{HOST}:{port}>;tag={n}",
        f"To: <{uri}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {n}-bench@{HOST}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:m@{HOST}:{port}>",
        "Max-Forwards: 70",
        "Subject: Performance Test",
        *([extra] if extra else []),
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def answers(sock: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


async def run(messages: int) -> list[float]:
    node = Node(
        Config("main", "main", "example.com", HOST, 0, 0, "token", rate_limit=1e9, rate_burst=1e9)
    )
    await node.start()
    try:
        node.ensure_shard(GROUP, 10)
        member = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        member.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        member.bind((HOST, 0))
        member.setblocking(False)
        port = member.getsockname()[1]
        uri = f"sip:bench@{HOST}:{node.port}"
        member.sendto(request("INVITE", uri, port, 0), (HOST, node.port))
        for _ in range(100):  # the 200 to the INVITE
            await asyncio.sleep(0.01)
            ok = [a for a in answers(member) if a.startswith(b"SIP/2.0 200")]
            if ok:
                break
        else:
            raise RuntimeError("the member's INVITE was not answered 200")
        tag = ok[0].split(b"\r\nTo: ")[1].split(b"\r\n")[0].split(b"tag=")[1].decode()
        member.sendto(request("ACK", uri, port, 0, to_tag=tag), (HOST, node.port))
        await asyncio.sleep(0.05)
        gc.collect()
        gc.freeze()
        # The UDP endpoint's datagram callback, as uvloop calls it (private: no
        # public handle on the socket's protocol).
        receive = node.stack._udp[socket.AF_INET].datagram_received
        source = (HOST, port)
        body = b"Hello"
        datagrams = [
            request("MESSAGE", uri, port, n + 1, "Content-Type: text/plain", body)
            for n in range(messages)
        ]
        per_message: list[float] = []
        answered = 0
        for start in range(0, messages, BATCH):
            batch = datagrams[start : start + BATCH]
            t0 = time.process_time_ns()
            for data in batch:
                receive(data, source)
            per_message.append((time.process_time_ns() - t0) / len(batch) / 1000)
            answered += sum(a.startswith(b"SIP/2.0 200") for a in answers(member))
            await asyncio.sleep(0)
        if answered != messages:
            raise RuntimeError(f"{answered} of {messages} MESSAGEs answered 200")
        return per_message
    finally:
        node.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000)
    args = p.parse_args()
    per = uvloop.run(run(args.messages))
    core = "compiled (mypyc)" if compiled.ACTIVE else "pure Python"
    print(
        f"SIP core {core}: CPU us per MESSAGE over {len(per)} batches of {BATCH}: "
        f"best {min(per):.1f}, median {statistics.median(per):.1f}"
    )


if __name__ == "__main__":
    main()
