"""The benchmark report: markdown tables, printed and written to bench/results/latest.md."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sipbench.fanout import Fanout
from sipbench.sipp import MAX_FAILURES, MIN_SUSTAINED, Step
from sipbench.stats import percentile

THROUGHPUT_GOAL = 0.9
FANOUT_GOAL = 1.0
# The reference row (sipbench/floor_server.py): what CPython + uvloop + loopback UDP
# cost at the least per request; not a product.
FLOOR = "floor"
LABELS = {FLOOR: "floor (reference, not a product)"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


@dataclass
class Throughput:
    name: str
    steps: list[Step]
    best: Step | None
    latency_rate: int
    latency_us: list[float]
    cpu: Step | None = None  # the fixed-rate run measuring CPU per request

    @property
    def max_rate(self) -> float:
        return self.best.achieved if self.best else 0.0

    @property
    def peak(self) -> float:
        """Highest achieved rate of any step with at most 1% failures, even one that
        missed the pacing bar (less sensitive to sipp's pacing on a busy machine)."""
        return max((s.achieved for s in self.steps if s.failure_ratio <= MAX_FAILURES), default=0)


@dataclass
class Report:
    settings: list[str]
    notes: list[str] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    fanouts: list[Fanout] = field(default_factory=list)
    receiver_capacity: float = math.nan


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def machine_lines() -> list[str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}; "
        f"load average at start {load} (the machine is shared with other work)",
        f"Kamailio: {_version(['/usr/sbin/kamailio', '-v'])}; "
        f"sipp: {_version(['/usr/bin/sipp', '-v'])}; Python {platform.python_version()}",
    ]


def _limit(t: Throughput) -> str:
    """Which resource stopped the rate search, judged from the steps above the best."""
    assert t.best is not None
    above = [s for s in t.steps if s.rate > t.best.rate]
    busiest = max([t.best, *above], key=lambda s: s.server_cpu)
    if busiest.server_cpu >= 85:
        return (
            f"the server's CPU is the limit (it reached {busiest.server_cpu:.0f}% of a core "
            f"at {busiest.rate:,}/s offered)."
        )
    return (
        f"not the server's CPU (at most {busiest.server_cpu:.0f}% of a core at or above the "
        f"best step): the load generator's pacing (sipp {t.best.sipp_cpu:.0f}%) or the "
        "machine's loopback UDP path."
    )


def _paired(a: Fanout, b: Fanout) -> str:
    """Median over turns of a's rate / b's rate (runs i of both were back to back)."""
    pairs = [
        x.deliveries_per_s / y.deliveries_per_s
        for x, y in zip(a.runs, b.runs, strict=False)
        if y.deliveries_per_s > 0
    ]
    return f"{percentile(pairs, 50):.2f}x" if pairs else "n/a"


def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def _find(items: list[Throughput], name: str) -> Throughput | None:
    return next((t for t in items if t.name == name), None)


def _fan(items: list[Fanout], name: str) -> Fanout | None:
    return next((f for f in items if f.name == name), None)


def _floor_lines(items: list[Throughput]) -> list[str]:
    """The floor reference against Kamailio and sip-node: rates and CPU per request."""
    floor = _find(items, FLOOR)
    if floor is None:
        return []
    out = ["", "## Against the floor reference (CPython + uvloop + loopback UDP at the least)", ""]
    for name in ("kamailio", "sip-node"):
        t = _find(items, name)
        if t is None:
            continue
        line = f"- {name} / floor: max sustained {_ratio(t.max_rate, floor.max_rate)}"
        if t.cpu is not None and floor.cpu is not None:
            mine, least = t.cpu.cpu_us_per_request, floor.cpu.cpu_us_per_request
            line += (
                f"; CPU per request {mine:.1f} us against the floor's {least:.1f} us "
                f"({mine - least:+.1f} us"
                + (
                    ", the server's own work above what any Python server pays)"
                    if name == "sip-node"
                    else ")"
                )
            )
        fp99, tp99 = percentile(floor.latency_us, 99), percentile(t.latency_us, 99)
        line += f"; p99 at {t.latency_rate}/s {_ms(tp99)} us against the floor's {_ms(fp99)} us"
        out.append(line)
    return out


def render(report: Report) -> str:
    out = ["# sipfleet SIP benchmark: sip-node vs Kamailio, with a floor reference", ""]
    out += [f"- {line}" for line in report.settings]
    out += ["", "## MESSAGE throughput (sipp UAC, one MESSAGE per transaction, UDP)", ""]
    out.append(
        f"A step passes when at most {MAX_FAILURES:.0%} of MESSAGEs fail and the achieved rate "
        f"(200s / wall time until the last answer) is at least {MIN_SUSTAINED:.0%} of the offered "
        "rate. CPU % is of one core; machine busy % is of all cores and includes other "
        "work on the machine (it is shared). Latency at the max rate comes from sipp's "
        "response-time trace (1 ms "
        "resolution: 0 means under 1 ms); the microsecond latency comes from a separate run "
        "at the same modest rate for every server, from sipp's message trace timestamps "
        "(sipp sends that rate in bursts of a few MESSAGEs a few ms apart, so a "
        "single-threaded server's latency is a multiple of its time per request). CPU us "
        "per request at max = server CPU % at the best step / its achieved rate (clock "
        "ticks over the step: coarse)."
    )
    out += [
        "",
        "| server | max sustained MESSAGE/s | failures at max | p50 / p99 ms at max | "
        "latency rate | p50 / p99 us | server CPU % at max | CPU us per request at max | "
        "sipp CPU % at max | peak achieved/s at < 1% failures |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report.throughput:
        b = t.best
        out.append(
            f"| {_label(t.name)} | {t.max_rate:,.0f} | "
            + (f"{b.failed}/{b.sent} | {b.p(50):.0f} / {b.p(99):.0f} | " if b else "- | - | ")
            + f"{t.latency_rate}/s | {_ms(percentile(t.latency_us, 50))} / "
            f"{_ms(percentile(t.latency_us, 99))} | "
            + (
                f"{b.server_cpu:.0f} | {1e4 * b.server_cpu / b.achieved:.1f} | {b.sipp_cpu:.0f} |"
                if b and b.achieved
                else "- | - | - |"
            )
            + f" {t.peak:,.0f} |"
        )
    out += [
        "",
        "CPU per request: the server's user+system CPU time (all its threads and processes, "
        "the scheduler's nanosecond count in /proc/PID/task/TID/sched; the kernel's share "
        "from /proc/PID/stat, in 10 ms clock ticks) "
        "during a fixed-rate run, divided by the MESSAGEs it answered 200. Other work on "
        "the machine delays a server but hardly adds to its CPU time, so this is the "
        "steady number on a shared machine. A run where not every MESSAGE was answered "
        "(an overloaded machine: retransmissions, failures) is not comparable.",
        "",
        "| server | rate | answered | CPU us per request | of which system (kernel) | "
        "server CPU % | machine busy % |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in report.throughput:
        c = t.cpu
        if c is not None:
            out.append(
                f"| {_label(t.name)} | {c.rate:,}/s | {c.ok}/{c.sent} | "
                f"{c.cpu_us_per_request:.1f} | {c.sys_us_per_request:.1f} | "
                f"{c.server_cpu:.0f} | {c.machine_busy:.0f} |"
            )
    for t in report.throughput:
        if not t.steps:
            continue
        out += [
            "",
            f"Steps against {_label(t.name)}:",
            "",
            "| offered/s | achieved/s | sent | ok | failed | p50 ms | p99 ms | "
            "server CPU % | sipp CPU % | machine busy % | pass |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in t.steps:
            out.append(
                f"| {s.rate:,} | {s.achieved:,.0f} | {s.sent} | {s.ok} | {s.failed} | "
                f"{s.p(50):.0f} | {s.p(99):.0f} | {s.server_cpu:.0f} | {s.sipp_cpu:.0f} | "
                f"{s.machine_busy:.0f} | {'yes' if s.passed else 'no'} |"
            )
    for t in report.throughput:
        if t.best is not None:
            out.append(f"\n{_label(t.name)}: {_limit(t)}")
    out += ["", "## Fan-out: one MESSAGE to every member of one group", ""]
    out.append(
        "deliveries/s = members / (time from sending the group MESSAGE to the moment the "
        "last member sent its 200); median over the runs. The servers take turns, one "
        "fan-out each (imc, sip-node, imc, ...), so other load on the machine hits both alike. "
        "CPU us per delivery: the server's on-CPU time from the send until the pause after "
        "the run (the members' 200s handled too; all its processes), per member delivered, "
        "median over the runs: like the CPU per request, steadier than the rate. "
        "Member receiver capacity "
        f"(this process blasting MESSAGEs at it): {report.receiver_capacity:,.0f} deliveries/s."
    )
    out += [
        "",
        "| server | members | runs | delivered (all runs) | median ms to last 200 | "
        "median deliveries/s | best deliveries/s | median ms to first | "
        "median ms to sender's 200 | CPU us per delivery |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report.fanouts:
        rates = [r.deliveries_per_s for r in f.runs]
        out.append(
            f"| {f.name} | {f.members} | {len(f.runs)} | "
            f"{'/'.join(str(r.delivered) for r in f.runs)} | {f.median_to_last_ms:.1f} | "
            f"{f.median_rate:,.0f} | {max(rates):,.0f} | "
            f"{percentile([r.to_first_ms for r in f.runs], 50):.2f} | "
            f"{percentile([r.sender_200_ms for r in f.runs], 50):.1f} | "
            f"{f.cpu_us_per_delivery:.1f} |"
        )
    out += ["", "## Ratios (sip-node / Kamailio)", ""]
    node_t, kam_t = _find(report.throughput, "sip-node"), _find(report.throughput, "kamailio")
    if node_t and kam_t:
        ratio = node_t.max_rate / kam_t.max_rate if kam_t.max_rate else 0.0
        verdict = "met" if ratio >= THROUGHPUT_GOAL else "NOT met"
        out.append(
            f"- MESSAGE throughput: {_ratio(node_t.max_rate, kam_t.max_rate)} "
            f"(goal >= {THROUGHPUT_GOAL}x at < 1% failures: {verdict}); by peak achieved/s "
            f"at < 1% failures: {_ratio(node_t.peak, kam_t.peak)}"
        )
    node_f, kam_f = _fan(report.fanouts, "sip-node"), _fan(report.fanouts, "kamailio-imc")
    if node_f and kam_f:
        ratio = node_f.median_rate / kam_f.median_rate if kam_f.median_rate else 0.0
        verdict = "met" if ratio >= FANOUT_GOAL and node_f.complete else "NOT met"
        out.append(
            f"- Fan-out deliveries/s: {_ratio(node_f.median_rate, kam_f.median_rate)} "
            f"(goal >= {FANOUT_GOAL}x imc: {verdict}); median of the per-turn ratios: "
            f"{_paired(node_f, kam_f)}"
        )
    out += _floor_lines(report.throughput)
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(out) + "\n"
