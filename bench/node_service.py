"""Why sip-node's latency at a modest rate is what it is: sipp's bursts, service time, GC.

    .venv/bin/python bench/node_service.py [--rate 1000] [--seconds 10] [--sip-node-dir DIR]

Starts one sip-node (role main) under sipbench/service_probe.py, which times
every UDP datagram it handles (wall clock and thread CPU) and every garbage
collection, and the floor reference (sipbench/floor_server.py). Then sipp sends
MESSAGE at `--rate` for `--seconds` to each, with its message trace on, as
sip_bench.py's latency run does. Prints, per server, sipp's latency
percentiles and how sipp spaced its MESSAGEs (bursts); for sip-node also the
service time per datagram, the main thread's CPU outside the datagram callback
(the event loop, receive calls, timers), and the GC pauses by generation.

Nothing is written to bench/results; perf.md quotes its output. Everything
listens on 127.0.0.1; every run is bounded; started processes are stopped on exit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import cli, sipnode, sipp
from sipbench.fanout import MemberReceiver
from sipbench.probe import wait_sip_ready
from sipbench.procs import BenchError, Procs, exit_on_sigterm, free_port
from sipbench.stats import percentile

HOST = "127.0.0.1"
PROBE = Path(__file__).resolve().parent / "sipbench" / "service_probe.py"
FLOOR = Path(__file__).resolve().parent / "sipbench" / "floor_server.py"
_STAMP = re.compile(rb"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})$", re.M)


def spread(values: list[float]) -> str:
    """p50 / p90 / p99 / p99.9 / max of `values` (us)."""
    qs = [percentile(values, q) for q in (50, 90, 99, 99.9)]
    return " / ".join(f"{q:.0f}" for q in qs) + f" / {max(values):.0f}"


def send_gaps(trace: Path) -> list[float]:
    """Microseconds between consecutive MESSAGEs sipp sent, from its message trace."""
    text = trace.read_bytes()
    stamps = list(_STAMP.finditer(text))
    sent: list[datetime] = []
    for i, match in enumerate(stamps):
        end = stamps[i + 1].start() if i + 1 < len(stamps) else len(text)
        block = text[match.end() : end]
        if b"message sent" in block[:60] and b"MESSAGE sip:" in block:
            sent.append(datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S.%f"))
    return [(b - a).total_seconds() * 1e6 for a, b in itertools.pairwise(sent)]


def latency(target: sipp.Target, args: argparse.Namespace, workdir: Path) -> None:
    """sipp's latency run against `target`, printed with its send spacing."""
    lat = sipp.run_latency(target, args.rate, args.seconds, workdir)
    gaps = send_gaps(workdir / f"{target.name}-latency-{args.rate}" / "messages.log")
    close = sum(1 for g in gaps if g < 100)
    print(f"{target.name}: sipp latency p50 / p90 / p99 / p99.9 / max us: {spread(lat)}")
    print(
        f"  sipp's spacing: {close} of {len(gaps)} MESSAGEs sent < 100 us after the one "
        f"before (bursts); gaps p50 {percentile(gaps, 50):.0f} us, p90 "
        f"{percentile(gaps, 90):.0f} us"
    )


def report_probe(data: dict[str, list[list[int]]]) -> None:
    svc = data["svc"]
    if len(svc) < 300:
        raise BenchError(f"the probe saw only {len(svc)} datagrams")
    print(f"  service wall per datagram, us: {spread([s[0] / 1000 for s in svc])}")
    cpu = [s[1] / 1000 for s in svc]
    print(f"  service thread CPU per datagram, us: {spread(cpu)}; mean {sum(cpu) / len(cpu):.1f}")
    inner = svc[100:-100]
    span = inner[-1][3] - inner[0][2]
    inside = sum(s[1] for s in inner)
    print(
        f"  main thread CPU per datagram {span / len(inner) / 1000:.1f} us, of which inside "
        f"datagram_received {inside / len(inner) / 1000:.1f} us (the rest: event loop, "
        "receive calls, timers)"
    )
    by_gen: dict[int, list[float]] = {}
    for gen, ns in data["gc"]:
        by_gen.setdefault(gen, []).append(ns / 1000)
    for gen in sorted(by_gen):
        v = by_gen[gen]
        print(
            f"  GC gen{gen}: {len(v)} collections, pause p50 {percentile(v, 50):.0f} us, max "
            f"{max(v):.0f} us, total {sum(v) / 1000:.1f} ms "
            f"({sum(v) / len(svc):.2f} us per datagram)"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=1000, help="MESSAGE/s (default 1000)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    p.add_argument("--sip-node-dir", type=Path, help="the sip-node code in this folder")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    args = p.parse_args(argv)
    if not 10 <= args.rate <= 20000 or not 1 <= args.seconds <= 60:
        p.error("--rate must be within 10..20000 and --seconds within 1..60")
    exit_on_sigterm()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with cli.workdir("nodeservice-", args.keep) as workdir, Procs(workdir) as procs:
        port = free_port(HOST)
        floor = procs.start("floor", [sys.executable, str(FLOOR), "--port", str(port)])
        wait_sip_ready(HOST, port, 10.0, "the floor server")
        floor_uri = f"sip:echo@{HOST}:{port}"
        latency(
            sipp.Target("floor", HOST, port, floor_uri, f"sip:sender@{HOST}", floor.pid),
            args,
            workdir,
        )
        out = workdir / "probe.json"
        receiver = MemberReceiver(procs, HOST, free_port(HOST))
        ready = sipnode.setup(
            procs, HOST, receiver, "sender", ["m0000"],
            wrapper=[sys.executable, str(PROBE), str(out)], code_dir=args.sip_node_dir,
        )  # fmt: skip
        node = ready.node
        target = sipp.Target(
            "sip-node", HOST, node.sip_port, node.group_uri("solo"), ready.sender_uri, node.proc.pid
        )
        latency(target, args, workdir)
        os.kill(node.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10.0
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # let the write finish
        report_probe(json.loads(out.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
