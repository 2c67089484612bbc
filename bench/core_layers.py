"""The SIP core's cost per MESSAGE, layer by layer, without sockets.

    .venv/bin/python bench/core_layers.py [--messages 10000]   (SIPFLEET_PURE_PYTHON=1: pure core)

Feeds distinct MESSAGEs shaped like the benchmark's sipp load through the core
as sip-node's stack does: parse_message, check_request, TransactionLayer.receive,
then a 200 built by make_response and sent with TransactionLayer.respond (which
keeps it for retransmissions). Every message goes through all four; each layer
is timed on its own in process CPU time (time.process_time_ns around each call,
less the clock's own cost, calibrated), so other work on a shared machine hardly
moves it; best of 5 runs, each on a fresh transaction layer. The garbage
collector is off while timing (its share is in the whole-process CPU per
request that sip_bench.py measures). With PYTHONPATH pointing at an older copy
of sip-node/ it measures that copy.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

from sipfleet.node.sip import SipRequest, parse_message
from sipfleet.node.sip.response import make_response
from sipfleet.node.sip.transaction import RequestReceived, TransactionLayer
from sipfleet.node.sip.validate import check_request
from sipfleet.node.stack import POLICY

TEMPLATE = (
    "MESSAGE sip:solo@bench.sipfleet.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-1-0\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:sender@127.0.0.1:5080>;tag={n}\r\n"
    "To: <sip:solo@bench.sipfleet.test>\r\n"
    "Call-ID: {n}-1234@127.0.0.1\r\n"
    "CSeq: 1 MESSAGE\r\n"
    "Contact: <sip:sender@127.0.0.1:5080>\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 28\r\n\r\n"
    "hello from sipp call {n:07d}"
)
LAYERS = ("parse", "validate", "transaction", "response")
SOURCE = ("127.0.0.1", 5070)


def run(datas: list[bytes]) -> list[float]:
    """CPU microseconds per message: each layer, then the whole loop (which also
    holds the clock calls)."""
    layer = TransactionLayer()
    gc.collect()
    gc.disable()
    try:
        return _timed(datas, layer)
    finally:
        gc.enable()


def clock_cost(samples: int = 20000) -> float:
    """Nanoseconds one process_time_ns() interval adds by itself (best of 5)."""
    clock = time.process_time_ns
    best = float("inf")
    for _ in range(5):
        total = 0
        for _ in range(samples):
            t0 = clock()
            total += clock() - t0
        best = min(best, total / samples)
    return best


def _timed(datas: list[bytes], layer: TransactionLayer) -> list[float]:
    clock = time.process_time_ns
    spent = [0, 0, 0, 0]
    cpu0 = time.process_time()
    for i, data in enumerate(datas):
        t0 = clock()
        message = parse_message(data)
        t1 = clock()
        assert isinstance(message, SipRequest)
        check_request(message, POLICY)
        t2 = clock()
        events = layer.receive(message, SOURCE, "UDP", 1000.0 + i * 1e-4)
        t3 = clock()
        event = events[0]
        assert isinstance(event, RequestReceived)
        layer.respond(event.tx_id, make_response(event.request, 200), 1000.0)
        t4 = clock()
        spent[0] += t1 - t0
        spent[1] += t2 - t1
        spent[2] += t3 - t2
        spent[3] += t4 - t3
    whole = (time.process_time() - cpu0) / len(datas) * 1e6
    cost = clock_cost()
    return [max(ns / len(datas) - cost, 0.0) / 1000 for ns in spent] + [whole]


def core_name() -> str:
    try:
        from sipfleet.node.sip import compiled
    except ImportError:  # a copy from before the mypyc build
        return "pure Python"
    return "compiled (mypyc)" if compiled.ACTIVE else "pure Python"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=10000, help="distinct messages (<= 1e6)")
    args = p.parse_args(argv)
    if not 1 <= args.messages <= 1_000_000:
        p.error("--messages must be within 1..1000000")
    datas = [TEMPLATE.format(n=i).encode() for i in range(args.messages)]
    runs = [run(datas) for _ in range(5)]
    best = [min(r[i] for r in runs) for i in range(len(LAYERS) + 1)]
    print(f"SIP core: {core_name()}; {args.messages} MESSAGEs; us per message, best of 5")
    for name, us in zip(LAYERS, best, strict=False):
        print(f"  {name:<12} {us:6.2f}")
    print(f"  {'sum':<12} {sum(best[:-1]):6.2f}  (the loop: {best[-1]:.2f}, clock calls included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
