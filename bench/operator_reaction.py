"""Scale-out reaction time: load crosses the target -> first 302 to a new Ready server.

    .venv/bin/python bench/operator_reaction.py [--runs 10] [--state-dir DIR]
        [--keep-cluster] [--budget 540]

1. Brings the real single-node cluster up (ControlPlane, as `sipfleet dev up`: the
   kubelet runs the server Pods in containerd, on the CNI bridge), installs the CRDs
   and the operator's RBAC, and runs `sipfleet-operator --interval 1` with its
   ServiceAccount's token on one fresh namespace per run. Run it under the
   machine's real-node lock: `flock /tmp/sipfleet-realcluster.lock ...`.
2. Each run applies a SipFleet and a SipConference (10 members per server,
   targetLoad 0.5, intervalSeconds 1, redirect-only), waits for the main server,
   joins 5 members (exactly the target) and lets the operator see that for 2 s
   plus a random fraction of the pass period (so the crossing falls at a random
   phase of the operator's 1 s timer).
3. A 6th member joins: its 200 OK is the instant the load crosses the target (t0).
   From then on a probe INVITE goes to the group at the main server every 100 ms
   (a 200 makes the prober a member, as any join; a full main answers 480) until
   one is answered 302 with a Contact on a node Pod that the watch has seen Ready.
   That answer's arrival minus t0 is one sample.
4. Breakdown per run, from a Pod watch and polling the admin APIs every 25 ms:
   node Pod created, its container running, its server answering /readyz (the
   benchmark's own probe), node Pod Ready (the kubelet's probe), the group's
   shard on the node, routes with the node on the main server.

Members and the admin polls run on the host, from its address on the pod bridge
(Pod IPs are not reachable from loopback); every wait is bounded; the operator and (unless
--keep-cluster) the control plane are stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from opbench.crowd import TimedCrowd
from opbench.plane import bench_plane
from opbench.podwatch import PodTimes, PodWatch
from sipbench.procs import BenchError, Procs, exit_on_sigterm
from sipbench.stats import percentile
from sipfleet.demo import kubeside
from sipfleet.devcluster import binaries
from sipfleet.devcluster.cluster import Cluster, host_address_towards
from sipfleet.devcluster.controlplane import ControlPlane
from sipfleet.node.admin_client import AdminClient, AdminError

FLEET = "react"
CONFERENCE = "conf"
DOMAIN = "example.com"
GROUP = f"sip:{CONFERENCE}@{DOMAIN}"
TOKEN_SECRET = "react-admin-token"
PER_SERVER = 10
TARGET_LOAD = 0.5
INTERVAL = 1
BASE_MEMBERS = 5  # = PER_SERVER * TARGET_LOAD: at the target, not above it
PROBE_EVERY = 0.1
POLL_EVERY = 0.025
REACTION_TIMEOUT = 30.0


def fleet() -> dict[str, Any]:
    return {
        "apiVersion": "sipfleet.io/v1alpha1",
        "kind": "SipFleet",
        "metadata": {"name": FLEET},
        "spec": {
            "mainServer": {"domain": DOMAIN},
            "minNodes": 0,
            "maxNodes": 2,
            "membersPerNode": PER_SERVER,
            "adminTokenSecret": TOKEN_SECRET,
        },
    }


def conference() -> dict[str, Any]:
    return {
        "apiVersion": "sipfleet.io/v1alpha1",
        "kind": "SipConference",
        "metadata": {"name": CONFERENCE},
        "spec": {
            "uri": GROUP,
            "fleetRef": {"name": FLEET},
            "capacity": {"membersPerServer": PER_SERVER},
            "scaling": {"targetLoad": TARGET_LOAD, "intervalSeconds": INTERVAL},
            "transfer": {"mode": "redirect-only"},
            "access": {"policy": "open"},  # sipp members without credentials
        },
    }


@dataclass
class Sample:
    run: int
    reaction: float  # t0 -> 302 to a Ready new node
    pod_created: float | None
    pod_running: float | None
    pod_serving: float | None
    pod_ready: float | None
    shard_on_node: float | None
    routes_on_main: float | None
    node: str
    probes: int
    answers: dict[int, int] = field(default_factory=dict)

    def row(self) -> str:
        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"

        codes = " ".join(f"{k}x{v}" for k, v in sorted(self.answers.items()))
        steps = (
            self.pod_created,
            self.pod_running,
            self.pod_serving,
            self.pod_ready,
            self.shard_on_node,
            self.routes_on_main,
        )
        return (
            f"| {self.run} | {self.reaction:.2f} | {' | '.join(f(x) for x in steps)} | "
            f"{self.node} | {self.probes} ({codes}) |"
        )


HEADER = (
    "| run | crossing -> 302 (s) | node Pod created (s) | container running (s) | "
    "server answers /readyz (s) | node Pod Ready (s) | shard on node (s) | "
    "routes with node on main (s) | node | probes (answers) |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


async def wait_for(what: str, probe: Any, timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(every)


class Marks:
    """When a node's server first answered /readyz, the group's shard appeared on a
    node and routes with a node reached main.

    Polled every POLL_EVERY over the admin API (the benchmark's own probe of
    /readyz, beside the kubelet's); the node's address comes from the watch.
    """

    def __init__(self, main: AdminClient, token: str, watch: PodWatch) -> None:
        self.main, self.token, self.watch = main, token, watch
        self.nodes: dict[str, AdminClient] = {}
        self.serving_at: float | None = None
        self.shard_at: float | None = None
        self.routes_at: float | None = None

    async def poll(self) -> None:
        while None in (self.serving_at, self.shard_at, self.routes_at):
            with contextlib.suppress(AdminError):
                if self.serving_at is None and await self._a_node_serves():
                    self.serving_at = time.time()
                if self.routes_at is None and await self._routes_have_node():
                    self.routes_at = time.time()
                if self.shard_at is None and await self._shard_on_a_node():
                    self.shard_at = time.time()
            await asyncio.sleep(POLL_EVERY)

    def _node(self, ip: str) -> AdminClient:
        return self.nodes.setdefault(ip, AdminClient(f"http://{ip}:8080", self.token, timeout=0.5))

    async def _a_node_serves(self) -> bool:
        for pod in self.watch.snapshot().values():
            if pod.role == "node" and pod.ip and await self._node(pod.ip).ready():
                return True
        return False

    async def _routes_have_node(self) -> bool:
        routes = await self.main.routes()
        return len(routes.groups.get(GROUP, ())) > 1

    async def _shard_on_a_node(self) -> bool:
        for pod in self.watch.snapshot().values():
            if pod.role == "node" and pod.ip and pod.ready:
                state = await self._node(pod.ip).state()
                if any(s.group == GROUP for s in state.shards):
                    return True
        return False

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.close()


class Bench:
    def __init__(self, cluster: Cluster, api: client.CoreV1Api) -> None:
        self.cluster = cluster
        self.api = api

    def apply(self, namespace: str, *objs: dict[str, Any]) -> None:
        kubeside.kubectl(
            self.cluster, "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objs)
        )

    def token(self, namespace: str) -> str | None:
        try:
            secret = self.api.read_namespaced_secret(TOKEN_SECRET, namespace)
        except client.ApiException:
            return None
        data = (secret.data or {}).get("token")
        return base64.b64decode(data).decode().strip() if data else None

    async def run(self, index: int, namespace: str) -> Sample:
        watch = PodWatch(self.api, namespace).start()
        admin: AdminClient | None = None
        crowd: TimedCrowd | None = None
        try:
            self.apply(namespace, fleet(), conference())

            async def main_ready() -> PodTimes | None:
                pod = watch.snapshot().get(f"{FLEET}-main")
                return pod if pod and pod.ready and pod.ip else None

            main = await wait_for("the main server Pod to be Ready", main_ready, 90)
            token = await wait_for(
                "the admin token Secret", lambda: asyncio.to_thread(self.token, namespace), 30
            )
            admin = AdminClient(f"http://{main.ip}:8080", token, timeout=2.0)

            async def shard_on_main() -> bool:
                state = await admin.state()
                return any(s.group == GROUP for s in state.shards)

            await wait_for("the group's shard on the main server", shard_on_main, 30)
            # Members on the host's address towards the Pod network (the pod bridge):
            # a loopback source cannot reach a Pod.
            host = host_address_towards(str(main.ip))
            crowd = TimedCrowd(GROUP, (str(main.ip), 5060), host=host)
            await crowd.start()
            joined = await crowd.join_all(BASE_MEMBERS, "base")
            if joined != BASE_MEMBERS:
                raise BenchError(f"only {joined}/{BASE_MEMBERS} base members joined")
            # The operator sees load == target (no scale-out) for two passes; the random
            # part spreads the crossing over the pass period (the setup itself waits on
            # the operator, so without it every crossing would sit at the same phase).
            await asyncio.sleep(2.0 + random.uniform(0.0, INTERVAL))
            if any(p.role == "node" for p in watch.snapshot().values()):
                raise BenchError("a node was created before the load crossed the target")
            t0 = await crowd.join_timed(crowd.add("crosser"))
            if t0 is None:
                raise BenchError("the member that crosses the target could not join")
            return await self._react(index, t0, crowd, admin, token, watch)
        finally:
            if crowd is not None:
                crowd.close()
            if admin is not None:
                await admin.close()
            watch.stop()
            await asyncio.to_thread(self.teardown, namespace)

    async def _react(
        self,
        index: int,
        t0: float,
        crowd: TimedCrowd,
        admin: AdminClient,
        token: str,
        watch: PodWatch,
    ) -> Sample:
        marks = Marks(admin, token, watch)
        poller = asyncio.create_task(marks.poll())
        answers: dict[int, int] = {}
        probes = 0
        try:
            while time.time() - t0 < REACTION_TIMEOUT:
                began = time.monotonic()
                probes += 1
                answer = await crowd.probe(crowd.add(f"probe{probes}"))
                if answer is not None:
                    answers[answer.status] = answers.get(answer.status, 0) + 1
                    node = self._ready_node(answer.contact, answer.wall, watch)
                    if answer.status == 302 and node is not None:
                        return Sample(
                            run=index,
                            reaction=answer.wall - t0,
                            pod_created=_since(node.created, t0),
                            pod_running=_since(node.running, t0),
                            pod_serving=_since(marks.serving_at, t0),
                            pod_ready=_since(node.ready, t0),
                            shard_on_node=_since(marks.shard_at, t0),
                            routes_on_main=_since(marks.routes_at, t0),
                            node=node.name,
                            probes=probes,
                            answers=answers,
                        )
                await asyncio.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - began)))
        finally:
            poller.cancel()
            await marks.close()
        raise BenchError(f"no 302 to a Ready node within {REACTION_TIMEOUT:g}s ({answers})")

    @staticmethod
    def _ready_node(contact: str | None, at: float, watch: PodWatch) -> PodTimes | None:
        """The node Pod the Contact points at, if the watch saw it Ready before ``at``."""
        if not contact:
            return None
        host = contact.split("@", 1)[-1].split(":", 1)[0].split(";", 1)[0]
        for pod in watch.snapshot().values():
            if pod.role == "node" and pod.ip == host and pod.ready is not None and pod.ready <= at:
                return pod
        return None

    def teardown(self, namespace: str) -> None:
        """Delete the conference and fleet (the operator clears finalizers), wait for Pods."""
        for kind, name in (("sipconference", CONFERENCE), ("sipfleet", FLEET)):
            self.cluster.kubectl(
                "delete", kind, name, "-n", namespace, "--ignore-not-found", "--wait=true",
                "--timeout=30s", check=False, timeout=40,
            )  # fmt: skip
        self.cluster.kubectl(
            "delete", "pods", "--all", "-n", namespace, "--wait=true", "--timeout=30s",
            check=False, timeout=40,
        )  # fmt: skip


def _since(t: float | None, t0: float) -> float | None:
    return None if t is None else t - t0


def start_cluster(plane: ControlPlane) -> Cluster:
    plane.up(timeout=120.0, hold=True)  # held: an abandoned node is taken down next time
    return Cluster.of(plane, binaries.locate(build_if_missing=False))


async def bench(args: argparse.Namespace, cluster: Cluster, procs: Procs) -> list[Sample]:
    namespaces = [f"bench-react-{i}" for i in range(args.runs)]
    kubeside.install(cluster)
    for ns in namespaces:
        cluster.kubectl("create", "namespace", ns, check=False)
    sa = kubeside.service_account_kubeconfig(cluster, procs.workdir / "operator.kubeconfig")
    ns_args = [a for ns in namespaces for a in ("--namespace", ns)]
    procs.start(
        "operator",
        [str(kubeside.OPERATOR_BIN), *ns_args, "--kubeconfig", str(sa), "--interval", "1"],
    )
    api = client.CoreV1Api(
        config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    )
    runner = Bench(cluster, api)
    samples: list[Sample] = []
    deadline = time.monotonic() + args.budget
    for i, ns in enumerate(namespaces, 1):
        if time.monotonic() > deadline:
            print(f"budget of {args.budget:g}s used up after {len(samples)} runs", flush=True)
            break
        try:
            sample = await runner.run(i, ns)
        except (BenchError, AdminError, OSError) as err:
            print(f"run {i}: FAILED: {err}", flush=True)
            continue
        print(f"run {i}: {sample.reaction:.2f}s  {sample.row()}", flush=True)
        samples.append(sample)
    return samples


def summary(samples: list[Sample]) -> str:
    lines = [HEADER, *(s.row() for s in samples), ""]

    def stat(name: str, values: list[float]) -> str:
        return (
            f"| {name} | {len(values)} | {percentile(values, 50):.2f} | "
            f"{percentile(values, 95):.2f} | {min(values, default=float('nan')):.2f} | "
            f"{max(values, default=float('nan')):.2f} |"
        )

    def col(attr: str) -> list[float]:
        return [v for s in samples if (v := getattr(s, attr)) is not None]

    lines += [
        "| from the crossing to | n | p50 (s) | p95 (s) | min (s) | max (s) |",
        "| --- | --- | --- | --- | --- | --- |",
        stat("node Pod created", col("pod_created")),
        stat("its container running", col("pod_running")),
        stat("its server answers /readyz", col("pod_serving")),
        stat("node Pod Ready", col("pod_ready")),
        stat("shard on node", col("shard_on_node")),
        stat("routes with node on main", col("routes_on_main")),
        stat("first 302 to the Ready node", col("reaction")),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="samples (one namespace each)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="control plane state (default: a tmp dir, removed after the run)",
    )
    parser.add_argument("--keep-cluster", action="store_true", help="leave it running")
    parser.add_argument("--budget", type=float, default=540.0, help="no new run after (s)")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        with (
            bench_plane("opbench-react-", args.state_dir, args.keep_cluster) as (workdir, plane),
            Procs(workdir) as procs,
        ):
            cluster = start_cluster(plane)
            samples = asyncio.run(bench(args, cluster, procs))
    except BenchError as err:
        print(f"operator_reaction: {err}", file=sys.stderr)
        return 1
    print()
    print(summary(samples))
    return 0 if samples else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
