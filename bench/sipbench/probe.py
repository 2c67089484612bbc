"""One-off SIP requests from the benchmark process: readiness probes and the fan-out send."""

from __future__ import annotations

import socket
import time

from sipbench import sipmsg
from sipbench.procs import BenchError


class UdpPeer:
    """A UDP socket on loopback that sends a request and waits for its final response."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.local: tuple[str, int] = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()

    def transact(self, data: bytes, target: tuple[str, int], timeout: float) -> bytes | None:
        """Send `data` (retransmitted every 0.5 s) and return the final response, or None."""
        call_id = sipmsg.header(data, b"call-id")
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                self.sock.sendto(data, target)
                next_send = now + 0.5
            self.sock.settimeout(max(min(next_send, deadline) - now, 0.001))
            try:
                reply, _addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            code = sipmsg.status_code(reply)
            if code and code >= 200 and sipmsg.header(reply, b"call-id") == call_id:
                return reply
        return None


def wait_sip_ready(host: str, port: int, timeout: float, what: str) -> None:
    """Wait until host:port answers OPTIONS with any final response."""
    peer = UdpPeer(host)
    try:
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline:
            n += 1
            uri = f"sip:{host}:{port}"
            req = sipmsg.request(
                "OPTIONS",
                uri,
                local=peer.local,
                from_uri=f"sip:probe@{host}",
                to_uri=uri,
                call_id=f"probe-{n}-{peer.local[1]}@{host}",
            )
            if peer.transact(req, (host, port), 0.4) is not None:
                return
    finally:
        peer.close()
    raise BenchError(f"{what} did not answer OPTIONS on {host}:{port} within {timeout:.0f} s")
