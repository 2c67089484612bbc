"""Child processes of a benchmark run: started in their own session, always cleaned up.

Every server, sipp and receiver the benchmark starts goes through `Procs`, whose
`close()` (run by the context manager, also on Ctrl-C and errors) terminates each
process group: first SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO


class BenchError(RuntimeError):
    """A benchmark step could not run; the message says what and where to look."""


class Procs:
    """Owns the processes one benchmark run starts."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in a new session; stderr (and stdout unless given) go to NAME.log."""
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            list(argv),
            cwd=self.workdir,
            env=env,
            stdin=stdin,
            stdout=log if stdout is None else stdout,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self._running.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
        """Terminate one process group and forget it."""
        _terminate(proc, grace)
        self._running = [(n, p) for n, p in self._running if p is not proc]

    def stop_pid(self, *pids: int) -> None:
        """Stop the processes started with these pids."""
        for _name, proc in list(self._running):
            if proc.pid in pids:
                self.stop(proc)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return f"(no log {path})"
        text = path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def close(self) -> None:
        for _name, proc in reversed(self._running):
            _terminate(proc, 3.0)
        self._running.clear()

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Kamailio forks workers into the same group: make sure none outlives the leader.
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def exit_on_sigterm() -> None:
    """Turn SIGTERM and SIGINT into KeyboardInterrupt so `with Procs(...)` cleans up.

    SIGINT too: a program started in the background by a non-interactive shell
    inherits SIGINT ignored, and Python then installs no handler of its own.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def free_port(host: str, kind: int = socket.SOCK_DGRAM) -> int:
    """A port the kernel reports free on `host` (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def session_cpu_seconds(session_id: int) -> float:
    """User+system CPU seconds of every live process in session `session_id`."""
    user, system = session_cpu_split(session_id)
    return user + system


def session_cpu_split(session_id: int) -> tuple[float, float]:
    """(user, system) CPU seconds of every live process in session `session_id`,
    in clock ticks (10 ms): coarse, see `session_runtime` for the exact total."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for entry in _session(session_id):
        try:
            fields = _stat_fields(entry)
        except (OSError, ValueError):
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / tick, system / tick


def session_runtime(session_id: int) -> float:
    """On-CPU seconds (user+system) of every thread of every live process in session
    `session_id`, from the scheduler's nanosecond count (`se.sum_exec_runtime` in
    /proc/PID/task/TID/sched, in ms); NaN when the kernel does not show it."""
    total = 0.0
    for entry in _session(session_id):
        try:
            tasks = list((entry / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                text = (task / "sched").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("se.sum_exec_runtime"):
                    total += float(line.split(":", 1)[1]) / 1000.0
                    break
            else:
                return math.nan
    return total


def _stat_fields(entry: Path) -> list[str]:
    """/proc/PID/stat from field 3 (state) on: the session is [3], utime [11], stime [12]."""
    stat = (entry / "stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def _session(session_id: int) -> list[Path]:
    """/proc/PID of every live process in session `session_id`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(entry)[3]) == session_id:
                out.append(entry)
        except (OSError, ValueError, IndexError):
            continue
    return out


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class CpuMeter:
    """CPU use of several process sessions over a time window, in % of one core,
    and how busy the whole machine was (% of all cores, everyone's work)."""

    def __init__(self, sessions: dict[str, int]) -> None:
        self.sessions = sessions
        self._start = {name: session_cpu_split(sid) for name, sid in sessions.items()}
        self._runtime = {name: session_runtime(sid) for name, sid in sessions.items()}
        self._machine = machine_ticks()
        self._t0 = time.monotonic()

    def machine_busy(self) -> float:
        busy, total = machine_ticks()
        d_total = total - self._machine[1]
        return 100.0 * (busy - self._machine[0]) / d_total if d_total > 0 else 0.0

    def seconds(self) -> dict[str, float]:
        """User+system CPU seconds each session used since the meter started."""
        return {name: sum(split) for name, split in self.split().items()}

    def split(self) -> dict[str, tuple[float, float]]:
        """(user, system) CPU seconds each session used since the meter started."""
        out = {}
        for name, sid in self.sessions.items():
            user, system = session_cpu_split(sid)
            user0, system0 = self._start[name]
            out[name] = (user - user0, system - system0)
        return out

    def runtime(self) -> dict[str, float]:
        """On-CPU seconds each session used since the meter started, to the
        nanosecond (NaN when the kernel does not show it): finer than `seconds`."""
        return {
            name: session_runtime(sid) - self._runtime[name] for name, sid in self.sessions.items()
        }

    def percent(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        return {name: 100.0 * used / elapsed for name, used in self.seconds().items()}
