"""The floor reference: a minimal uvloop UDP server answering every request with a 200.

    .venv/bin/python bench/sipbench/floor_server.py --host 127.0.0.1 --port 5080

NOT a product and NOT a SIP server: a measuring stick. It does the least a Python
asyncio server can do per request and still be answered by sipp: one
`datagram_received` call from uvloop, a split of the request into lines, a copy
of five header lines (Via, From, To, Call-ID, CSeq; RFC 3261 8.2.6.2 lists what
a response copies), and one `sendto` of "SIP/2.0 200 OK" with them. No parsing
of values, no validation, no transaction, no To tag, no retransmission handling,
no limits. Whatever CPU it spends per request is what CPython, uvloop and the
kernel's loopback UDP cost; sip-node's CPU above it is sip-node's own work
(bench/sip_bench.py runs it side by side with Kamailio and sip-node).

Runs until SIGTERM/SIGINT (sip_bench.py's Procs stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from typing import cast

import uvloop

# The same socket buffers as sip-node's UDP endpoint (sipfleet/node/transport.py).
UDP_BUFFER = 4 << 20
# The header lines a response copies, by their lower-case names (compact forms too).
COPIED = (b"via:", b"v:", b"from:", b"f:", b"to:", b"t:", b"call-id:", b"i:", b"cseq:")


class FloorProtocol(asyncio.DatagramProtocol):
    """Answers each datagram with a 200 carrying the request's five header lines."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's UDPTransport

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if head[0].startswith(b"SIP/2.0"):
            return  # a response: nothing to answer
        out = [b"SIP/2.0 200 OK"]
        for line in head[1:]:
            if line[: line.find(b":") + 1].lower().replace(b" ", b"") in COPIED:
                out.append(line)
        out.append(b"Content-Length: 0\r\n\r\n")
        self.transport.sendto(b"\r\n".join(out), addr)


async def serve(host: str, port: int) -> None:
    """Serve on host:port (UDP) until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
    sock.bind((host, port))
    transport, _ = await loop.create_datagram_endpoint(FloorProtocol, sock=sock)
    try:
        await stop.wait()
    finally:
        transport.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
