"""SIP benchmark, in one go: sip-node vs Kamailio on this machine.

    .venv/bin/python bench/sip_bench.py [--quick] [--out bench/results/latest.md]

1. MESSAGE throughput: sipp offers MESSAGE at rising rates (doubling, then
   bisecting) to Kamailio answering with a stateless 200, and to one sip-node
   (role main) where the MESSAGE goes to a group whose only member is the
   sender: the full group path (membership check, 200, fan-out to nobody) with
   no deliveries, the closest equivalent of a stateless 200 that sip-node has.
   A third server runs alongside as a REFERENCE, not a product: the floor
   (sipbench/floor_server.py), a minimal Python uvloop server answering each
   request with a 200 made by copying five header lines. Its CPU per request is
   what CPython, uvloop and loopback UDP cost at the least, so the report shows
   how much of sip-node's cost is the runtime and how much is its own work
   (--no-floor leaves it out).
   Reports the best sustained rate (< 1% failures), p50/p99 latency, CPU, and
   each server's CPU microseconds per request at a fixed moderate rate (on-CPU
   time from /proc over a bounded sipp run, divided by the MESSAGEs answered):
   unlike the rate, other work on a shared machine hardly moves it.
2. Fan-out: one MESSAGE to a group of N members (default 1,000), against
   Kamailio's imc module (room preloaded with the same members but the last,
   who joins with #join) and against a sip-node group those members joined by
   INVITE. deliveries/s = N / (time from send to the last member's 200), and
   each server's CPU microseconds per delivery.

The servers take turns, step by step and fan-out by fan-out, so that other
work on a shared machine hits both alike.

Everything listens on 127.0.0.1; every loop is bounded in count and time; all
started processes are killed on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import cli, fanout, kamailio, sipnode, sipp
from sipbench.fanout import MemberReceiver
from sipbench.probe import wait_sip_ready
from sipbench.procs import BenchError, Procs, exit_on_sigterm, free_port
from sipbench.report import FLOOR, Report, Throughput, machine_lines, render

HOST = "127.0.0.1"
SENDER = "sender"
SERVERS = ("kamailio", FLOOR, "sip-node")
FLOOR_SERVER = Path(__file__).resolve().parent / "sipbench" / "floor_server.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.bench_parser(__doc__, "latest.md")
    p.add_argument("--members", type=int, default=1000, help="fan-out group size (default 1000)")
    p.add_argument("--reps", type=int, default=9, help="fan-out runs per server (default 9)")
    p.add_argument("--start-rate", type=int, default=2000, help="first offered MESSAGE/s")
    p.add_argument("--ceiling", type=int, default=128000, help="highest offered MESSAGE/s")
    p.add_argument(
        "--latency-rate",
        type=int,
        default=1000,
        help="fixed rate of the microsecond latency run (default 1000/s)",
    )
    p.add_argument(
        "--cpu-rate",
        type=int,
        default=2000,
        help="fixed rate of the CPU-per-request run (default 2000/s)",
    )
    p.add_argument(
        "--cpu-seconds", type=float, default=5.0, help="length of the CPU-per-request run"
    )
    p.add_argument(
        "--cpu-only",
        action="store_true",
        help="only the CPU-per-request and latency runs: no rate search, no fan-out",
    )
    p.add_argument(
        "--children",
        type=int,
        default=2,
        help="Kamailio UDP worker processes (default 2: one per core)",
    )
    p.add_argument("--only", choices=SERVERS, help="measure one server only")
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="leave out the floor reference (bench/sipbench/floor_server.py)",
    )
    args = cli.parse(p, argv)
    if args.quick:
        args.step_seconds, args.budget, args.members, args.reps = 1.5, 20.0, 200, 2
    if not 1 <= args.members <= 10000:
        p.error("--members must be within 1..10000")
    if not 1 <= args.reps <= 50:
        p.error("--reps must be within 1..50")
    return args


def wanted(args: argparse.Namespace, server: str) -> bool:
    """Is `server` (one of SERVERS) part of this run?"""
    only: str | None = args.only
    if only is not None:
        return only == server
    return not (server == FLOOR and args.no_floor)


def run_throughput(
    targets: list[sipp.Target], args: argparse.Namespace, workdir: Path
) -> list[Throughput]:
    """Rate searches against every target, taking turns step by step; then the
    fixed-rate latency run against each."""
    print(
        f"[throughput] {', '.join(t.name for t in targets)}: rate search from "
        f"{args.start_rate}/s, {args.step_seconds:.1f} s steps, the servers taking turns, "
        f"budget {args.budget:.0f} s per server",
        flush=True,
    )

    def stepper(target: sipp.Target) -> Callable[[int], sipp.Step]:
        def step(rate: int) -> sipp.Step:
            s = sipp.run_step(target, rate, args.step_seconds, workdir)
            print(
                f"  {target.name:<9} offered {rate:>7,}/s achieved {s.achieved:>9,.0f}/s "
                f"failed {s.failed:>6} p50 {s.p(50):.0f} ms p99 {s.p(99):.0f} ms "
                f"server CPU {s.server_cpu:.0f}% sipp CPU {s.sipp_cpu:.0f}% "
                f"machine {s.machine_busy:.0f}% -> {'pass' if s.passed else 'FAIL'}",
                flush=True,
            )
            return s

        return step

    searches = {
        t.name: (sipp.RateSearch(args.start_rate, args.ceiling), stepper(t)) for t in targets
    }
    if not args.cpu_only:
        sipp.search_together(searches, args.budget * len(targets))
    results = []
    for t in targets:
        search = searches[t.name][0]
        cpu = sipp.run_step(t, args.cpu_rate, args.cpu_seconds, workdir / "cpu")
        print(
            f"  {t.name:<9} CPU per request at {args.cpu_rate:,}/s: "
            f"{cpu.cpu_us_per_request:.1f} us, of which system {cpu.sys_us_per_request:.1f} us "
            f"({cpu.ok}/{cpu.sent} answered, "
            f"machine {cpu.machine_busy:.0f}% busy)"
            + ("" if cpu.ok == cpu.sent else " NOT COMPARABLE: not all answered (overloaded)"),
            flush=True,
        )
        latency = sipp.run_latency(t, args.latency_rate, 3.0, workdir)
        results.append(
            Throughput(t.name, search.steps, search.good, args.latency_rate, latency, cpu)
        )
    return results


def start_stateless(procs: Procs, args: argparse.Namespace) -> tuple[int, sipp.Target]:
    """The stateless-200 Kamailio: (its pid, the load target)."""
    port = free_port(HOST)
    proc = kamailio.start_stateless(procs, HOST, port, args.children)
    target = sipp.Target(
        "kamailio", HOST, port, f"sip:echo@{HOST}:{port}", f"sip:{SENDER}@{HOST}", proc.pid
    )
    return proc.pid, target


def start_floor(procs: Procs) -> sipp.Target:
    """The floor reference (sipbench/floor_server.py, not a product): the load target."""
    port = free_port(HOST)
    argv = [sys.executable, str(FLOOR_SERVER), "--host", HOST, "--port", str(port)]
    proc = procs.start(FLOOR, argv)
    try:
        wait_sip_ready(HOST, port, 10.0, "the floor server")
    except BenchError as exc:
        raise BenchError(f"{exc}\n--- {FLOOR}.log ---\n{procs.log_tail(FLOOR)}") from None
    return sipp.Target(
        FLOOR, HOST, port, f"sip:echo@{HOST}:{port}", f"sip:{SENDER}@{HOST}", proc.pid
    )


def start_imc(
    procs: Procs,
    report: Report,
    args: argparse.Namespace,
    receiver: MemberReceiver,
    members: list[str],
) -> fanout.Group:
    """Kamailio imc with the room: all but the last member preloaded, the last joins
    with imc's #join command."""
    port = free_port(HOST)
    room = kamailio.ImcRoom("bench", HOST, SENDER, members[:-1])
    proc = kamailio.start_imc(procs, HOST, port, args.children, room, receiver.port)
    told = kamailio.imc_join(receiver, HOST, port, room, members[-1])
    report.notes.append(
        f"imc: {len(members) - 1} members preloaded, {members[-1]} joined by `#join` "
        f"(imc announced it to {told} members, the sender and the joiner included)"
    )
    return fanout.Group(
        "kamailio-imc", (HOST, port), f"sip:bench@{HOST}:{port}", f"sip:{SENDER}@{HOST}",
        len(members), proc.pid,
    )  # fmt: skip


def start_sipnode(
    procs: Procs,
    report: Report,
    args: argparse.Namespace,
    receiver: MemberReceiver,
    members: list[str],
) -> tuple[sipnode.Setup, sipp.Target]:
    """sip-node with both groups joined, and the load target (the sender-only group)."""
    ready = sipnode.setup(procs, HOST, receiver, SENDER, members, code_dir=args.sip_node_dir)
    node = ready.node
    print(
        f"[sip-node] {len(members) + 1} members joined by INVITE in {ready.join_seconds:.1f} s",
        flush=True,
    )
    report.notes.append(f"sip-node join of {len(members) + 1} members by INVITE: {ready.joined}")
    target = sipp.Target(
        "sip-node", HOST, node.sip_port, node.group_uri("solo"), ready.sender_uri, node.proc.pid
    )
    return ready, target


def run_fanouts(
    report: Report,
    args: argparse.Namespace,
    receiver: MemberReceiver,
    groups: list[fanout.Group],
    node: sipnode.SipNode | None,
) -> None:
    names = ", ".join(g.name for g in groups)
    print(f"[fan-out] {names}: {args.members} members, {args.reps} runs each", flush=True)
    retrans = "sipfleet_node_retransmissions_total"
    before = node.metric(retrans) if node is not None else 0.0
    report.fanouts += fanout.measure(groups, receiver, args.reps)
    if node is not None:
        report.notes.append(
            f"sip-node retransmissions during its {args.reps} fan-outs: "
            f"{node.metric(retrans) - before:.0f} (a 200 lost before sip-node read it, e.g. "
            "its UDP receive buffer overflowed while it was still sending)"
        )


def guarded(report: Report, what: str, fn: Callable[[], None]) -> None:
    """Run one part; a failure is reported in the notes and the run goes on."""
    try:
        fn()
    except BenchError as exc:
        print(f"!! {what} failed: {exc}", file=sys.stderr, flush=True)
        report.notes.append(f"{what} NOT measured: {str(exc).splitlines()[0]}")
    except Exception as exc:  # a bug in a server or here: report it, keep the other numbers
        traceback.print_exc()
        report.notes.append(f"{what} NOT measured: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    members = [f"m{i:04d}" for i in range(args.members)]
    report = Report(
        settings=[
            *machine_lines(),
            f"Kamailio: {args.children} UDP worker children (one per core), stateless 200 via "
            "sl_send_reply; imc room preloaded from db_text except the last member, who joins "
            "with `#join` (every `#join` makes imc announce the join to every member, ~N^2/2 "
            "MESSAGEs for N joins, so the benchmark writes the room's member table instead; the "
            "fan-out path is the same)",
            "sip-node: one process, role main (its runner uses uvloop); per-source rate limit "
            "set out of reach; MESSAGE throughput goes to a group whose only member is the sender",
            "Members: one UDP receiver process (Python) answering 200 for all members "
            "(members differ by user part); imc reaches it through outbound_proxy, sip-node "
            "through each member's Contact",
            f"Steps of {args.step_seconds:.1f} s; all traffic on {HOST}",
        ]
    )
    if wanted(args, FLOOR):
        report.settings.append(
            "floor: a REFERENCE, not a product (bench/sipbench/floor_server.py): one Python "
            "process on uvloop answering each request with a 200 made by copying five header "
            "lines (Via, From, To, Call-ID, CSeq); no parsing, validation, transaction or "
            "limits. Its CPU per request is what CPython, uvloop and loopback UDP cost at the "
            "least; sip-node's CPU above it is sip-node's own work"
        )
    if wanted(args, "sip-node"):
        report.settings.append(
            f"sip-node's SIP core: {sipnode.core(args.sip_node_dir)} "
            "(scripts/build_mypyc.py builds it; --pure-python forces the pure one)"
        )
    if args.sip_node_dir is not None:
        report.settings.append(f"sip-node code from {args.sip_node_dir} (not the installed copy)")
    t_start = time.monotonic()
    try:
        with cli.workdir("sipbench-", args.keep) as workdir, Procs(workdir) as procs:
            receiver = MemberReceiver(procs, HOST, free_port(HOST))
            report.receiver_capacity = fanout.receiver_capacity(receiver, args.members)
            targets: list[sipp.Target] = []
            stateless: list[int] = []
            ready: list[sipnode.Setup] = []

            def kamailio_up() -> None:
                pid, target = start_stateless(procs, args)
                stateless.append(pid)
                targets.append(target)

            def sipnode_up() -> None:
                setup, target = start_sipnode(procs, report, args, receiver, members)
                ready.append(setup)
                targets.append(target)

            if wanted(args, "kamailio"):
                guarded(report, "Kamailio", kamailio_up)
            if wanted(args, FLOOR):
                guarded(report, "floor", lambda: targets.append(start_floor(procs)))
            if wanted(args, "sip-node"):
                guarded(report, "sip-node", sipnode_up)
            guarded(
                report,
                "MESSAGE throughput",
                lambda: report.throughput.extend(run_throughput(targets, args, procs.workdir)),
            )
            procs.stop_pid(*stateless, *(t.session_id for t in targets if t.name == FLOOR))
            if args.cpu_only:
                return finish(report, args, t_start)
            groups: list[fanout.Group] = []
            if wanted(args, "kamailio"):
                guarded(
                    report,
                    "Kamailio imc",
                    lambda: groups.append(start_imc(procs, report, args, receiver, members)),
                )
            for setup in ready:
                node_group = fanout.Group(
                    "sip-node", (HOST, setup.node.sip_port), setup.node.group_uri("bench"),
                    setup.sender_uri, len(members), setup.node.proc.pid,
                )  # fmt: skip
                groups.append(node_group)
            node = ready[0].node if ready else None
            if groups:
                guarded(
                    report, "fan-out", lambda: run_fanouts(report, args, receiver, groups, node)
                )
    except KeyboardInterrupt:
        print("interrupted: processes stopped", file=sys.stderr)
        return 130
    return finish(report, args, t_start)


def finish(report: Report, args: argparse.Namespace, t_start: float) -> int:
    """Print the report and write it to --out."""
    report.settings.append(f"Total run time {time.monotonic() - t_start:.0f} s")
    cli.write_report(render(report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
