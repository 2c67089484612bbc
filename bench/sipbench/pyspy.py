"""py-spy sampling of a running process, and a summary of its collapsed stacks."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sipbench.procs import BenchError, Procs

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise BenchError("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


class Recording:
    """py-spy sampling `pid` into `out` (collapsed stacks) until `stop()`."""

    def __init__(self, procs: Procs, pid: int, out: Path, rate: int = 250) -> None:
        argv = [py_spy(), "record", "--pid", str(pid), "--duration", "120"]
        argv += ["--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(out)]
        self.procs, self.out = procs, out
        self.proc = procs.start(f"py-spy-{out.stem}", argv)
        time.sleep(0.5)  # attach before the load starts

    def stop(self) -> Profile:
        """Ctrl-C py-spy (it writes its output then) and summarise."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.procs.stop(self.proc)
        if not self.out.exists():
            log = self.procs.log_tail(f"py-spy-{self.out.stem}")
            raise BenchError(f"py-spy wrote nothing\n{log}")
        return summarise(self.out)


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "sip-node/", "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({file})"


@dataclass(frozen=True)
class Profile:
    samples: int
    self_time: Counter[str]
    total_time: Counter[str]

    def table(self, counter: Counter[str], top: int) -> list[str]:
        rows = ["| % of samples | function (file) |", "|---|---|"]
        for name, n in counter.most_common(top):
            rows.append(f"| {100.0 * n / max(self.samples, 1):.1f} | `{name}` |")
        return rows


def summarise(collapsed: Path) -> Profile:
    """Self and inclusive sample counts per function from py-spy's raw output."""
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        samples += n
        self_time[frames[-1]] += n
        for name in set(frames):
            total_time[name] += n
    return Profile(samples, self_time, total_time)
