"""sipp as the MESSAGE load generator: one fixed-rate step, a latency trace, a rate search."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sipbench.procs import BenchError, CpuMeter, free_port
from sipbench.stats import percentile

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "uac_message.xml"
SIPP = "/usr/bin/sipp"
# A step passes when at most this share of MESSAGEs fail ...
MAX_FAILURES = 0.01
# ... and the achieved rate is at least this share of the target rate.
MIN_SUSTAINED = 0.95


@dataclass(frozen=True)
class Target:
    """Where the load goes: host:port, Request-URI (the group), and the From URI."""

    name: str
    host: str
    port: int
    group_uri: str
    from_uri: str
    session_id: int  # the server's process session, for its CPU use
    scenario: Path = SCENARIO  # e.g. scenarios/uac_message_auth.xml (security.py)
    extra: tuple[str, ...] = ()  # more sipp options, e.g. ("-au", user, "-ap", password)


@dataclass
class Step:
    rate: int
    seconds: float
    sent: int
    ok: int
    failed: int
    rtts_ms: list[float] = field(repr=False)
    server_cpu: float
    sipp_cpu: float
    machine_busy: float  # % of all cores, including work that is not the benchmark's
    # The server's user+system CPU seconds during the step (the scheduler's exact
    # count; clock ticks of 10 ms where the kernel does not show it).
    server_cpu_s: float = 0.0
    server_sys_s: float = 0.0  # of which system (kernel) time, in 10 ms clock ticks

    @property
    def sys_us_per_request(self) -> float:
        """Of `cpu_us_per_request`, the kernel's part (system time)."""
        return 1e6 * self.server_sys_s / self.ok if self.ok else float("nan")

    @property
    def cpu_us_per_request(self) -> float:
        """The server's CPU microseconds per MESSAGE answered 200: much steadier on a
        shared machine than the rate, since other work delays the server but does not
        add to its CPU time."""
        return 1e6 * self.server_cpu_s / self.ok if self.ok else float("nan")

    @property
    def achieved(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def failure_ratio(self) -> float:
        return self.failed / self.sent if self.sent else 1.0

    @property
    def passed(self) -> bool:
        return self.failure_ratio <= MAX_FAILURES and self.achieved >= MIN_SUSTAINED * self.rate

    def p(self, q: float) -> float:
        return percentile(self.rtts_ms, q)


def _sipp_argv(target: Target, rate: int, calls: int, local_port: int, timeout_s: int) -> list[str]:
    return [
        SIPP,
        f"{target.host}:{target.port}",
        "-sf",
        str(target.scenario),
        "-key",
        "group_uri",
        target.group_uri,
        "-key",
        "from_uri",
        target.from_uri,
        "-i",
        target.host,
        "-p",
        str(local_port),
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-nostdin",
        "-buff_size",
        str(4 << 20),
        "-recv_timeout",
        "2000",
        "-timeout",
        f"{timeout_s}s",
        *target.extra,
    ]


def _run(argv: list[str], cwd: Path, timeout_s: float) -> float:
    """Run sipp to completion in `cwd`; return its CPU seconds. Exit 0/1 are normal."""
    cwd.mkdir(parents=True, exist_ok=True)
    with (cwd / "sipp.log").open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise BenchError(f"sipp did not finish within {timeout_s:.0f} s; see {cwd}")
            time.sleep(0.05)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, 1):
        tail = (cwd / "sipp.log").read_text(errors="replace")[-1500:]
        raise BenchError(f"sipp exited with {proc.returncode} in {cwd}:\n{tail}")
    return float(usage.ru_utime + usage.ru_stime)


def _final_stats(stat_file: Path) -> dict[str, str]:
    lines = stat_file.read_text().splitlines()
    if len(lines) < 2:
        raise BenchError(f"sipp wrote no statistics to {stat_file}")
    names = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(names, values, strict=False))


def _epoch(cell: str) -> float:
    """sipp's time cells read 'date<TAB>time<TAB>epoch.micro'."""
    return float(cell.split("\t")[-1])


def run_step(target: Target, rate: int, seconds: float, workdir: Path) -> Step:
    """Offer `rate` MESSAGE/s for `seconds`; wait for every transaction to finish."""
    calls = max(int(rate * seconds), 1)
    step_dir = workdir / f"{target.name}-{rate}"
    argv = [
        *_sipp_argv(target, rate, calls, free_port(target.host), int(seconds) + 20),
        "-trace_stat",
        "-stf",
        "stat.csv",
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        "1000",
    ]
    meter = CpuMeter({"server": target.session_id})
    sipp_cpu = _run(argv, step_dir, seconds + 30)
    user_s, sys_s = meter.split()["server"]
    exact_s = meter.runtime()["server"]
    server_cpu = meter.percent()["server"]
    machine_busy = meter.machine_busy()
    stats = _final_stats(step_dir / "stat.csv")
    elapsed = _epoch(stats["CurrentTime"]) - _epoch(stats["StartTime"])
    rtts: list[float] = []
    for rtt_file in step_dir.glob("*_rtt.csv"):
        for line in rtt_file.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2 and parts[1]:
                rtts.append(float(parts[1]))
    return Step(
        rate=rate,
        seconds=elapsed,
        sent=int(stats["OutgoingCall(C)"]),
        ok=int(stats["SuccessfulCall(C)"]),
        failed=int(stats["FailedCall(C)"]),
        rtts_ms=rtts,
        server_cpu=server_cpu,
        sipp_cpu=100.0 * sipp_cpu / max(elapsed, 1e-6),
        machine_busy=machine_busy,
        server_cpu_s=user_s + sys_s if math.isnan(exact_s) else exact_s,
        server_sys_s=sys_s,
    )


class RateSearch:
    """Double the rate until a step fails, then bisect `refine` times.

    `next_rate()` says what to offer next (None when done); `record(step)` feeds
    the result back. Several searches can take turns step by step.
    """

    def __init__(self, start: int, ceiling: int, refine: int = 2) -> None:
        self.ceiling, self.refine = ceiling, refine
        self.steps: list[Step] = []
        self.good: Step | None = None
        self.bad: Step | None = None
        self._rate: int | None = start
        self._bisecting = False

    def next_rate(self) -> int | None:
        return self._rate

    def record(self, step: Step) -> None:
        self.steps.append(step)
        if step.passed:
            self.good = step
        else:
            self.bad = step
        if self._bisecting or (self.good is not None and self.bad is not None):
            self._bisecting = True
            self._rate = self._bisect()
        elif step.passed:
            self._rate = step.rate * 2 if step.rate * 2 <= self.ceiling else None
        else:
            # Even the start failed: walk down.
            self._rate = step.rate // 2 if step.rate // 2 >= 50 else None

    def _bisect(self) -> int | None:
        assert self.good is not None and self.bad is not None
        if self.refine <= 0:
            return None
        self.refine -= 1
        mid = (self.good.rate + self.bad.rate) // 2 // 50 * 50
        return mid if self.good.rate < mid < self.bad.rate else None


def search_together(
    searches: dict[str, tuple[RateSearch, Callable[[int], Step]]], budget_s: float
) -> None:
    """Advance the searches in turns, one step each, until all are done or the
    budget is spent: other load on the machine then hits every server alike."""
    t_end = time.monotonic() + budget_s
    while time.monotonic() < t_end:
        active = [(srch, run) for srch, run in searches.values() if srch.next_rate() is not None]
        if not active:
            return
        for srch, run in active:
            rate = srch.next_rate()
            if rate is not None and time.monotonic() < t_end:
                srch.record(run(rate))


_STAMP = re.compile(rb"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})$", re.M)
_CALL_ID = re.compile(rb"^Call-ID:\s*(\S+)", re.M | re.I)


def run_latency(target: Target, rate: int, seconds: float, workdir: Path) -> list[float]:
    """Response times in microseconds at a fixed modest rate, from sipp's message trace.

    sipp's own response-time counters have 1 ms resolution, too coarse on loopback;
    its -trace_msg log stamps every message to the microsecond.
    """
    calls = max(int(rate * seconds), 1)
    step_dir = workdir / f"{target.name}-latency-{rate}"
    argv = [
        *_sipp_argv(target, rate, calls, free_port(target.host), int(seconds) + 20),
        "-trace_msg",
        "-message_file",
        "messages.log",
    ]
    _run(argv, step_dir, seconds + 30)
    text = (step_dir / "messages.log").read_bytes()
    sent: dict[bytes, datetime] = {}
    latencies: list[float] = []
    stamps = list(_STAMP.finditer(text))
    for i, match in enumerate(stamps):
        end = stamps[i + 1].start() if i + 1 < len(stamps) else len(text)
        block = text[match.end() : end]
        call_id = _CALL_ID.search(block)
        if call_id is None:
            continue
        when = datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S.%f")
        key = call_id.group(1)
        if b"message sent" in block[:60] and b"MESSAGE sip:" in block:
            sent.setdefault(key, when)
        elif b"message received" in block[:60] and b"SIP/2.0 200" in block and key in sent:
            latencies.append((when - sent.pop(key)).total_seconds() * 1e6)
    if not latencies:
        raise BenchError(f"no MESSAGE/200 pairs in {step_dir / 'messages.log'}")
    return latencies
