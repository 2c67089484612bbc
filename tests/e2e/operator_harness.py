"""Shared pieces of the operator e2e tests: the operator from its image, sipp members.

The operator runs as a user installs it: `Operator` installs the Helm chart
(charts/sipfleet, through `sipfleet.demo.kubeside.ChartOperator`) into the
test's namespace, so it is a Deployment running the ``sipfleet/operator`` image
that the session's `dev up` built from this checkout and imported into the
node, under the chart's ServiceAccount and least-privilege ClusterRole (every
test also proves the RBAC rules suffice). From its Pod it reaches the API
server through the ``kubernetes`` Service and the servers' admin APIs at their
Pod IPs; the tests read its /metrics and /healthz at its Pod IP.
Members are sipp processes; each logs JOINED/RECV/MOVED/LEFT lines
(tests/e2e/scenarios/resident.xml) that the tests read back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kube_support import get_json, wait_for
from sipfleet.demo import kubeside
from sipfleet.devcluster.cluster import Cluster, host_address_towards

REPO = Path(__file__).resolve().parents[2]
RESIDENT = Path(__file__).parent / "scenarios" / "resident.xml"
TICKER = Path(__file__).parent / "scenarios" / "ticker.xml"
SENDER = REPO / "tests" / "integration" / "scenarios" / "member.xml"
GROUP_USER = "conf"
DOMAIN = "example.com"
GROUP = f"sip:{GROUP_USER}@{DOMAIN}"
# The chart's operator.metricsPort and operator.healthPort (charts/sipfleet/values.yaml).
METRICS_PORT = 9090
HEALTH_PORT = 8081


def free_port(kind: socket.SocketKind = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port on `host` free right now (UDP for sipp by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def operator_namespace(kube: Cluster, namespace: str) -> None:
    """The CRDs installed (idempotent across test modules) and ``namespace`` created."""
    kubeside.install_crds(kube)
    kube.kubectl("create", "namespace", namespace)


@dataclass
class Operator:
    """The operator installed by the Helm chart into ``namespace`` (release
    ``<namespace>-<name>``, one replica watching that namespace), started with the
    ``sipfleet-operator`` options ``args`` (the chart's ``operator.extraArgs``).
    `stop` saves its logs (``kubectl logs``) to ``log`` and uninstalls it."""

    kube: Cluster
    namespace: str
    log: Path
    args: tuple[str, ...] = ()
    name: str = "op"
    chart: kubeside.ChartOperator = field(init=False)

    def __post_init__(self) -> None:
        self.chart = kubeside.ChartOperator(
            self.kube, f"{self.namespace}-{self.name}", self.namespace, self.log, self.args
        )

    def start(self) -> Operator:
        """Install the release (or scale it back up after `kill`); wait until Ready."""
        self.chart.start()
        return self

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node crash ends it: no clean shutdown, no Lease
        release. The container's processes are frozen (SIGSTOP) first, the Deployment
        scaled to zero (the kubelet's SIGTERM stays pending on frozen processes) and
        then they are SIGKILLed, so the kubelet does not restart the container; `start`
        scales it up again (a new Pod)."""
        frozen = [pid for pod in self.chart.pods() for pid in container_pids(pod)]
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.chart.save_log("kill")
        self.chart.scale_to_zero()
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Keep the logs, then ``helm uninstall`` (a clean shutdown)."""
        self.chart.stop()

    def alive(self) -> bool:
        """The operator's container runs now."""
        return self.chart.running()

    def pod_ip(self) -> str | None:
        """The running operator Pod's IP (None: no such Pod now)."""
        ips = [ip for p in self.chart.pods() if (ip := (p.get("status") or {}).get("podIP"))]
        return ips[0] if ips else None

    def _get(self, port: int, path: str) -> bytes | None:
        ip = self.pod_ip()
        if ip is None:
            return None
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=2) as resp:
                body: bytes = resp.read()
                return body
        except OSError:
            return None

    def health(self) -> dict[str, Any]:
        """The operator's liveness answer (GET /healthz on its Pod IP; {} unless 200)."""
        body = self._get(HEALTH_PORT, "/healthz")
        answer: dict[str, Any] = json.loads(body) if body else {}
        return answer

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the operator's /metrics on its Pod IP (0 when absent or
        unreachable)."""
        from prometheus_client.parser import text_string_to_metric_families

        body = self._get(METRICS_PORT, "/metrics")
        if body is None:
            return 0.0
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


@contextlib.contextmanager
def served_conferences(
    kube: Cluster, namespace: str, workdir: Path, *objs: dict[str, Any]
) -> Iterator[str]:
    """An operator in a new ``namespace`` serving ``objs`` (a SipFleet and its
    SipConferences): yields the main server's Pod IP once every conference is on it;
    afterwards deletes the conferences (the operator still running), uninstalls the
    operator and deletes the namespace."""
    operator_namespace(kube, namespace)
    op = Operator(kube, namespace, workdir / "operator.log")
    conferences = [o["metadata"]["name"] for o in objs if o["kind"] == "SipConference"]
    fleets = [o["metadata"]["name"] for o in objs if o["kind"] == "SipFleet"]
    try:
        op.start()
        apply(kube, namespace, *objs)
        for name in conferences:
            wait_for(
                f"{name} on the main server",
                lambda n=name: status(kube, namespace, n).get("shards"),
            )
        (fleet_name,) = fleets
        yield main_ip(kube, namespace, fleet_name)
    finally:
        kube.kubectl("delete", "sipconference", *conferences, "-n", namespace, check=False)
        op.stop()
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@dataclass
class Members:
    """One sipp process running resident members (see resident.xml)."""

    main_ip: str
    workdir: Path
    who: str
    count: int
    leaver: bool
    period_ms: int = 1000
    group_user: str = GROUP_USER
    proc: subprocess.Popen[bytes] | None = None
    port: int = 5060
    """The entry point's port (a NodePort: tests/e2e/test_operator_exposure.py)."""
    trace: bool = False
    """Also keep every SIP message sipp sends and receives in ``<who>.msg`` (to debug)."""

    @property
    def logfile(self) -> Path:
        return self.workdir / f"{self.who}.log"

    def start(self) -> Members:
        local = host_address_towards(self.main_ip)
        self.proc = subprocess.Popen(
            [
                "sipp",
                f"{self.main_ip}:{self.port}",
                "-sf",
                str(RESIDENT),
                "-s",
                self.group_user,
                "-key",
                "who",
                self.who,
                "-set",
                "leaver",
                "1" if self.leaver else "0",
                "-i",
                local,
                "-p",
                str(free_port(host=local)),
                "-m",
                str(self.count),
                "-r",
                "1",
                "-rp",
                str(self.period_ms),
                "-l",
                str(self.count + 5),
                "-nostdin",
                # sipp takes a request that arrives while a call is between a send
                # and its next recv (a server's retransmission, two servers' requests
                # back to back during a move) as unexpected; by default it then
                # aborts the call, sending a BYE with From and To unswapped that the
                # server answers 481, so the server keeps a member whose UA is gone.
                # Ignored instead, the request is retransmitted (UDP) and answered.
                "-default_behaviors",
                "all,-abortunexp",
                "-trace_logs",
                "-log_file",
                str(self.logfile),
                "-trace_err",
                "-error_file",
                str(self.workdir / f"{self.who}.err"),
                *(
                    ("-trace_msg", "-message_file", str(self.workdir / f"{self.who}.msg"))
                    if self.trace
                    else ()
                ),
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def lines(self, kind: str) -> list[list[str]]:
        """The log lines of one kind (all of them for ""), split into words."""
        if not self.logfile.exists():
            return []
        return [
            line.split()
            for line in self.logfile.read_text(errors="replace").splitlines()
            if line.startswith(kind + " ") or (not kind and line.strip())
        ]

    def joined(self) -> set[str]:
        return {parts[1] for parts in self.lines("JOINED")}

    def received(self, body: str) -> set[str]:
        """Members that logged a group MESSAGE whose body is ``body``."""
        return {p[1] for p in self.lines("RECV") if " ".join(p[2:]) == body}

    def left(self) -> set[str]:
        return {parts[1] for parts in self.lines("LEFT")}

    def byes(self) -> set[str]:
        """Members a server sent BYE (a transfer's old dialog, or the group removed)."""
        return {parts[1] for parts in self.lines("BYE")}

    def moved(self) -> set[str]:
        return {parts[1] for parts in self.lines("MOVED")}

    def moves(self) -> list[tuple[str, str]]:
        """(member, server IP) of each MOVED line, in order."""
        return [(p[1], _host(p[3])) for p in self.lines("MOVED")]

    def locations(self) -> dict[str, str]:
        """Member -> IP of the server it is on now (its last JOINED or MOVED line)."""
        where: dict[str, str] = {}
        for parts in self.lines(""):
            if parts[0] in ("JOINED", "MOVED") and len(parts) >= 4:
                where[parts[1]] = _host(parts[3])
        return where

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Ticker:
    """A group message every second (tests/e2e/scenarios/ticker.xml): one sipp call
    per second sends MESSAGE "hello from tick<n>" to the group at the main server,
    From the AOR of the resident member ``speaker`` (say ``talker1``), for at most
    ``limit`` seconds."""

    main_ip: str
    workdir: Path
    speaker: str
    limit: int = 1200
    group_user: str = GROUP_USER
    proc: subprocess.Popen[bytes] | None = None

    @property
    def logfile(self) -> Path:
        return self.workdir / "ticker.log"

    def start(self) -> Ticker:
        local = host_address_towards(self.main_ip)
        self.proc = subprocess.Popen(
            [
                "sipp",
                f"{self.main_ip}:5060",
                "-sf",
                str(TICKER),
                "-s",
                self.group_user,
                "-key",
                "speaker",
                self.speaker,
                "-i",
                local,
                "-p",
                str(free_port(host=local)),
                "-m",
                str(self.limit),
                "-r",
                "1",
                "-rp",
                "1000",
                "-nostdin",
                "-trace_logs",
                "-log_file",
                str(self.logfile),
                "-trace_err",
                "-error_file",
                str(self.workdir / "ticker.err"),
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def sent(self) -> list[int]:
        """The numbers of the ticks answered 200, in order."""
        if not self.logfile.exists():
            return []
        return [
            int(line.split()[1].removeprefix("tick"))
            for line in self.logfile.read_text(errors="replace").splitlines()
            if line.startswith("SENT tick")
        ]

    def last(self) -> int:
        """The highest tick number answered so far (0: none)."""
        return max(self.sent(), default=0)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _host(uri: str) -> str:
    """The host of a logged SIP URI (``sip:user@10.0.0.2:5060;x`` -> ``10.0.0.2``)."""
    return uri.split("@", 1)[-1].split(":", 1)[0].split(";", 1)[0]


def send_group_message(
    main_ip: str, workdir: Path, who: str, group_user: str = GROUP_USER, port: int = 5060
) -> str:
    """A transient member joins via the main server, sends one MESSAGE, leaves.

    Returns the body the others should log (member.xml sends "hello from <who>1").
    """
    local = host_address_towards(main_ip)
    result = subprocess.run(
        [
            "sipp",
            f"{main_ip}:{port}",
            "-sf",
            str(SENDER),
            "-s",
            group_user,
            "-key",
            "who",
            who,
            "-set",
            "send",
            "1",
            "-i",
            local,
            "-p",
            str(free_port(host=local)),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20s",
            "-trace_err",
            "-error_file",
            str(workdir / f"{who}.err"),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"sender {who} failed (sipp exit {result.returncode})"
    return f"hello from {who}1"


def everyone(groups: Iterable[Members], fn: Callable[[Members], set[str]]) -> set[str]:
    out: set[str] = set()
    for g in groups:
        out |= fn(g)
    return out


def apply(kube: Cluster, namespace: str, *objs: dict[str, Any]) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objs))


def fleet(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sipfleet.io/v1alpha1",
        "kind": "SipFleet",
        "metadata": {"name": name},
        "spec": {"mainServer": {"domain": DOMAIN}, **spec},
    }


OPEN = {"policy": "open"}


def conference(name: str, fleet_name: str, uri: str = GROUP, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sipfleet.io/v1alpha1",
        "kind": "SipConference",
        "metadata": {"name": name},
        # Open: these fleets have no member credentials (docs/security.md); a test that
        # wants another policy passes access=...
        "spec": {"uri": uri, "fleetRef": {"name": fleet_name}, "access": OPEN, **spec},
    }


def pods(kube: Cluster, namespace: str, role: str | None = None) -> list[dict[str, Any]]:
    selector = "sipfleet.io/fleet" + (f",sipfleet.io/role={role}" if role else "")
    items: list[dict[str, Any]] = get_json(kube, "pods", "-n", namespace, "-l", selector)["items"]
    return items


def node_names(kube: Cluster, namespace: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods(kube, namespace, "node"))


def main_ip(kube: Cluster, namespace: str, fleet_name: str) -> str:
    def probe() -> str | None:
        pod = kube.kubectl(
            "get", "pod", f"{fleet_name}-main", "-n", namespace, "-o", "json", check=False
        )
        if pod.returncode:
            return None
        body = json.loads(pod.stdout)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in body.get("status", {}).get("conditions", [])
        )
        ip: str | None = body["status"].get("podIP") if ready else None
        return ip

    return wait_for("the main server to be ready", probe, timeout=60)


def evict(kube: Cluster, namespace: str, pod: str) -> tuple[bool, str]:
    """POST pods/eviction (as ``kubectl drain`` does): (allowed, kubectl's answer).

    A PodDisruptionBudget that allows no disruption answers 429.
    """
    body = json.dumps(
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
        }
    )
    result = kube.kubectl(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
        "-f",
        "-",
        input=body,
        check=False,
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def status(kube: Cluster, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = get_json(kube, "sipconference", name, "-n", namespace)
    return body.get("status") or {}


def condition(st: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == kind), {})


def save_events(kube: Cluster, namespace: str, path: Path) -> None:
    """Keep the namespace's Events (time, reason, message) in ``path`` for a post-mortem."""
    items = get_json(kube, "events", "-n", namespace)["items"]
    path.write_text(
        "".join(
            f"{e.get('lastTimestamp') or e.get('eventTime')} {e['reason']} {e.get('message', '')}\n"
            for e in items
        )
    )


def events(kube: Cluster, namespace: str) -> list[tuple[str, str]]:
    items = get_json(kube, "events", "-n", namespace)["items"]
    return [(e["reason"], e.get("message", "")) for e in items]


def container_pids(pod: dict[str, Any]) -> list[int]:
    """The host pids of a Pod's (first) container: every process whose cgroup names
    its ``containerd://<id>`` (the real node's containers are visible from the
    host); [] while it is not running."""
    statuses = (pod.get("status") or {}).get("containerStatuses", [])
    running = [s["containerID"] for s in statuses if s.get("containerID")]
    if not running:
        return []
    ident = running[0].partition("://")[2]
    pids = []
    for cgroup in Path("/proc").glob("[0-9]*/cgroup"):
        try:
            if ident in cgroup.read_text():
                pids.append(int(cgroup.parent.name))
        except OSError:
            continue  # the process ended meanwhile
    return sorted(pids)


def kill_server(kube: Cluster, namespace: str, pod: str) -> list[int]:
    """SIGKILL a server Pod's process, as an OOM kill or a crash would end it (the
    kubelet then restarts its container: restartPolicy Always). Returns the pids
    killed; fails when the container has no process to kill."""
    pids = container_pids(get_json(kube, "pod", pod, "-n", namespace))
    assert pids, f"{pod} has no running container process"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def restarts(kube: Cluster, namespace: str, pod: str) -> int:
    """How many times the kubelet restarted the Pod's containers."""
    body = get_json(kube, "pod", pod, "-n", namespace)
    statuses = (body.get("status") or {}).get("containerStatuses", [])
    return sum(int(s.get("restartCount", 0)) for s in statuses)
