"""Operator at scale: 1,000 SipConferences, one fleet, a real API server.

    .venv/bin/python bench/operator_resync.py [--count 1000] [--settle 30]
        [--state-dir DIR] [--keep-cluster]

1. Brings the local cluster up (`sipfleet dev up --state-dir DIR`),
   applies the CRDs, one SipFleet (maxNodes 0: every group stays on the main
   server) and COUNT SipConferences without members.
2. Starts `sipfleet-operator` on that namespace and measures the *full
   resync*: the time until every conference carries a status written by the
   operator (status.observedGeneration set), and the operator's RSS and CPU.
3. Lets it run SETTLE more seconds and reports the steady state: control-loop
   passes per second (from the operator's own metrics), the effective period
   per conference, RSS and CPU share.

The cluster is the real single-node one (`sipfleet dev up`); the operator runs
as a host process with its ServiceAccount's token. Run it under the machine's
real-node lock, as the e2e tests and the other cluster benches:
``flock /tmp/sipfleet-realcluster.lock .venv/bin/python bench/operator_resync.py``.
Every wait is bounded; the operator and (unless --keep-cluster) the cluster are
stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
NAMESPACE = "bench-resync"
FLEET = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


def wait_until(what: str, probe: Callable[[], bool], timeout: float, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass
class Kube:
    kubectl: Path
    kubeconfig: Path

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise BenchError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


def kubectl_path() -> Path:
    from sipfleet.devcluster import binaries

    return Path(binaries.locate(build_if_missing=False).kubectl)


@contextlib.contextmanager
def dev_cluster(state_dir: Path, keep: bool) -> Iterator[Path]:
    sipfleet = str(VENV_BIN / "sipfleet")
    up = subprocess.run(
        [sipfleet, "dev", "up", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    down = [sipfleet, "dev", "down", "--state-dir", str(state_dir)]
    if up.returncode != 0:
        subprocess.run(down, capture_output=True, timeout=120)  # what did start
        raise BenchError(f"sipfleet dev up failed:\n{up.stdout}{up.stderr}")
    try:
        yield state_dir / "kubeconfig"
    finally:
        if not keep:
            subprocess.run(down, capture_output=True, timeout=120)


def manifests(count: int) -> tuple[str, list[str]]:
    fleet = {
        "apiVersion": "sipfleet.io/v1alpha1",
        "kind": "SipFleet",
        "metadata": {"name": FLEET},
        "spec": {"mainServer": {"domain": "bench.example.com"}, "maxNodes": 0},
    }
    batches, batch = [], []
    for i in range(count):
        batch.append(
            {
                "apiVersion": "sipfleet.io/v1alpha1",
                "kind": "SipConference",
                "metadata": {"name": f"conf{i:04d}"},
                "spec": {"uri": f"sip:conf{i:04d}@bench.example.com", "fleetRef": {"name": FLEET}},
            }
        )
        if len(batch) == 200 or i == count - 1:
            batches.append(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": batch}))
            batch = []
    return yaml.safe_dump(fleet), batches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def reconciles(port: int) -> float:
    """Conference passes so far; -1 while the metrics server does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return -1.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("sipfleet_operator_reconciles_total") and "SipConference" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def phases(kube: Kube) -> dict[str, int]:
    """How many conferences are in each status.phase."""
    out = kube.run(
        "get", "sipconferences", "-n", NAMESPACE,
        "-o", "jsonpath={range .items[*]}{.status.phase}{'\\n'}{end}",
    )  # fmt: skip
    counts: dict[str, int] = {}
    for line in out.splitlines():
        counts[line.strip() or "(none)"] = counts.get(line.strip() or "(none)", 0) + 1
    return counts


def statused(kube: Kube) -> int:
    out = kube.run(
        "get", "sipconferences", "-n", NAMESPACE,
        "-o", "jsonpath={range .items[*]}{.status.observedGeneration}{'\\n'}{end}",
    )  # fmt: skip
    return sum(1 for line in out.splitlines() if line.strip())


@contextlib.contextmanager
def operator(kubeconfig: Path, metrics_port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(VENV_BIN / "sipfleet-operator"),
                "--namespace", NAMESPACE,
                "--kubeconfig", str(kubeconfig),
                "--metrics-port", str(metrics_port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            if proc.poll() is None:
                stop = time.monotonic()
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                    print(f"operator exited {time.monotonic() - stop:.1f}s after SIGTERM")
                except subprocess.TimeoutExpired:
                    print("operator still running 20s after SIGTERM; killed")
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def run(args: argparse.Namespace) -> None:
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    print(f"control plane: {state_dir}", flush=True)
    with dev_cluster(state_dir, args.keep_cluster) as kubeconfig:
        kube = Kube(kubectl_path(), kubeconfig)
        kube.run("apply", "-f", str(ROOT / "crds"))
        kube.run(
            "wait", "--for=condition=Established", "--timeout=60s",
            "crd/sipfleets.sipfleet.io", "crd/sipconferences.sipfleet.io",
        )  # fmt: skip
        kube.run("create", "namespace", NAMESPACE, check=False)
        fleet, batches = manifests(args.count)
        started = time.monotonic()
        kube.run("apply", "-n", NAMESPACE, "-f", "-", input=fleet)
        for batch in batches:
            kube.run("apply", "-n", NAMESPACE, "-f", "-", input=batch)
        print(f"created {args.count} SipConferences in {time.monotonic() - started:.1f}s")
        if statused(kube):
            raise BenchError(
                f"conferences in {state_dir} already carry a status from an earlier run; "
                "pass a fresh --state-dir"
            )
        port = free_port()
        log = state_dir / "operator-bench.log"
        with operator(kubeconfig, port, log) as proc:
            t0 = time.monotonic()
            peak = 0.0
            done = 0

            def progress() -> bool:
                nonlocal peak, done
                if proc.poll() is not None:
                    raise BenchError(f"operator exited with {proc.returncode}; see {log}")
                peak = max(peak, rss_mib(proc.pid))
                done = statused(kube)
                return done >= int(args.count)

            try:
                wait_until("every conference to get a status", progress, args.timeout, every=1.0)
            except BenchError:
                print(f"only {done}/{args.count} conferences had a status; operator log: {log}")
                raise
            resync = time.monotonic() - t0
            cpu_resync = cpu_seconds(proc.pid)
            print(f"full resync: {args.count} conferences with status in {resync:.1f}s")
            print(f"  operator CPU during resync: {cpu_resync:.1f}s ({cpu_resync / resync:.0%})")
            print(f"  phases: {phases(kube)}")
            print(f"  operator peak RSS during resync: {peak:.0f} MiB")

            wait_until("the operator's metrics", lambda: reconciles(port) >= 0, 30)
            r0, c0, s0 = reconciles(port), cpu_seconds(proc.pid), time.monotonic()
            end = s0 + args.settle
            while time.monotonic() < end:
                if proc.poll() is not None:
                    raise BenchError(f"operator exited with {proc.returncode}; see {log}")
                peak = max(peak, rss_mib(proc.pid))
                time.sleep(1.0)
            span = time.monotonic() - s0
            passes = reconciles(port) - r0
            cpu = cpu_seconds(proc.pid) - c0
            rate = passes / span
            print(f"steady state over {span:.0f}s:")
            print(f"  control-loop passes: {passes:.0f} ({rate:.1f}/s)")
            if rate:
                print(f"  effective period per conference: {args.count / rate:.1f}s (target 2s)")
            print(f"  operator CPU: {cpu:.1f}s ({cpu / span:.0%} of one core)")
            print(f"  operator RSS now {rss_mib(proc.pid):.0f} MiB, peak {peak:.0f} MiB")
            print(f"  phases: {phases(kube)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="SipConferences to create")
    parser.add_argument("--settle", type=float, default=30.0, help="steady-state seconds")
    parser.add_argument("--timeout", type=float, default=900.0, help="resync timeout (s)")
    parser.add_argument("--state-dir", default="/tmp/sipfleet-bench-resync")
    parser.add_argument("--keep-cluster", action="store_true", help="leave it running")
    args = parser.parse_args()
    if not 1 <= args.count <= 5000:
        parser.error("--count must be between 1 and 5000")
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the operator and
    # the control plane are stopped by the context managers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
