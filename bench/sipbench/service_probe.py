"""Run sipfleet-node recording each UDP datagram's service time and each GC pause.

    python bench/sipbench/service_probe.py OUT.json /path/to/sipfleet-node ARGS...

A wrapper for `sipnode.start(wrapper=...)` (bench/node_service.py uses it), not
part of sip-node. It wraps `UdpEndpoint.datagram_received` (the uvloop callback
that parses, validates, handles and answers a request) with a wall clock and a
thread CPU clock, and times every collection through `gc.callbacks`. On SIGUSR1
it writes what it has to OUT.json: {"svc": [[wall_ns, cpu_ns, cpu_start_ns,
cpu_end_ns], ...], "gc": [[generation, pause_ns], ...]}. Then it runs sip-node's
own `main()` with the remaining arguments.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from sipfleet.node import transport
from sipfleet.node.cli import main

service: list[tuple[int, int, int, int]] = []
pauses: list[tuple[int, int]] = []
_gc_start = [0]


def _timed(
    original: Any,
) -> Any:
    def datagram_received(self: transport.UdpEndpoint, data: bytes, addr: Any) -> None:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        original(self, data, addr)
        c1 = time.thread_time_ns()
        service.append((time.perf_counter_ns() - t0, c1 - c0, c0, c1))

    return datagram_received


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter_ns()
    else:
        pauses.append((info["generation"], time.perf_counter_ns() - _gc_start[0]))


def _dump(out: Path) -> None:
    out.write_text(json.dumps({"svc": service, "gc": pauses}))


if __name__ == "__main__":
    OUT = Path(sys.argv[1])
    transport.UdpEndpoint.datagram_received = _timed(  # type: ignore[method-assign]
        transport.UdpEndpoint.datagram_received
    )
    gc.callbacks.append(_on_gc)

    def _on_usr1(signum: int, frame: FrameType | None) -> None:
        _dump(OUT)

    signal.signal(signal.SIGUSR1, _on_usr1)
    sys.argv = sys.argv[2:]
    sys.exit(main())
