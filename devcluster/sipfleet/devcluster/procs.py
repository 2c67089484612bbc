"""Start, identify and stop the background processes of a state dir.

A process is recorded as JSON (pid, kernel start time, argv). Before sending
a signal we check that the pid still names the same process (same start time
and command line), so a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_time: int
    argv: list[str]
    log: str


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; it is wrapped in parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Kernel start time of `pid` in clock ticks, None if gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def is_alive(record: ProcessRecord) -> bool:
    """True if the recorded process is still the one running under its pid."""
    return start_time(record.pid) == record.start_time and cmdline(record.pid) == record.argv


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start `argv` in its own session with output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    started = start_time(proc.pid)
    record = ProcessRecord(name, proc.pid, started or 0, list(argv), str(log))
    return proc, record


def record_of(pid: int, name: str) -> ProcessRecord | None:
    """A record of the running process `pid` (None if it is gone)."""
    started, argv = start_time(pid), cmdline(pid)
    if started is None or argv is None:
        return None
    return ProcessRecord(name, pid, started, argv, "")


def this_process(name: str) -> ProcessRecord:
    """A record of this very process (e.g. the holder of a cluster)."""
    record = record_of(os.getpid(), name)
    assert record is not None, "this process is running"
    return record


def save(record: ProcessRecord, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, path)


def load(path: Path) -> ProcessRecord | None:
    try:
        return ProcessRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _reap(pid: int) -> None:
    # Only our own children can be reaped; for others this is a no-op.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(record: ProcessRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(record.pid)
        if not is_alive(record):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop(record: ProcessRecord, timeout: float = 10.0) -> bool:
    """SIGTERM the recorded process (if it is still that process), then SIGKILL.

    Returns True if it was running and has been stopped.
    """
    if not is_alive(record):
        _reap(record.pid)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    if not wait_gone(record, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        wait_gone(record, 5.0)
    return True


def tail(path: Path, lines: int = 5) -> list[str]:
    """The last `lines` lines of a log file (empty if there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def ancestry() -> set[int]:
    """This process and its ancestors (e.g. the shell that runs `sipfleet dev down DIR`)."""
    chain = set()
    pid = os.getpid()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        fields = _stat_fields(pid)
        pid = int(fields[1]) if fields else 0
    return chain


def processes_under(directory: Path) -> list[int]:
    """Pids whose command line mentions `directory` or whose cwd is inside it,
    other than this process and its ancestors."""
    root = str(directory.resolve())
    skip = ancestry()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        argv = cmdline(int(entry.name)) or []
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if any(root in arg for arg in argv) or cwd == root or cwd.startswith(root + "/"):
            found.append(int(entry.name))
    return sorted(found)


_PORT_RANGE = range(20000, 32768)
"""Where control-plane ports are picked: below Linux's ephemeral range (32768
and up), from which every outgoing connection takes its local port, so a
kubectl or kopf connection cannot grab a port between our pick and the bind
(seen: the API server of one cluster failing with "address already in use")."""


def free_ports(count: int, exclude: Collection[int] = ()) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that are free right now, none in `exclude`.

    Each candidate stays bound until all are picked, so no port is handed out twice.
    """
    held: list[socket.socket] = []
    try:
        for port in random.sample(_PORT_RANGE, len(_PORT_RANGE)):
            if len(held) == count:
                break
            if port in exclude:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


def port_is_free(port: int) -> bool:
    """True if a server could listen on 127.0.0.1:`port` (as Go servers do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
