"""Load from a real Prometheus (PromQL over its HTTP API); no scale-in while it is gone.

Prometheus runs on the host, listening on the node IP (the address on the
node's port-less bridge ``sfnode0``, which the Pods have a route to and nothing
outside the machine reaches), so the operator queries it from its Pod, and it
scrapes the node Pods listed in a file_sd file that the test keeps in sync
with the Pods (label ``pod`` = Pod name).
Its query log proves the operator asked it; stopping it must block scale-in
and say so in the Degraded condition; starting it again lets scale-in happen.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from operator_harness import (
    GROUP,
    Members,
    Operator,
    apply,
    condition,
    conference,
    events,
    fleet,
    free_port,
    main_ip,
    node_names,
    operator_namespace,
    pods,
    send_group_message,
    status,
    wait_for,
)
from sipfleet.devcluster.cluster import Cluster
from sipfleet.devcluster.hostnet import NODE_IP

NS = "op-prom"
LEAVERS = 14
STAYERS = 6

pytestmark = pytest.mark.timeout(300)


class Prometheus:
    """A Prometheus server on the node IP scraping every second, with a query log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port(socket.SOCK_STREAM, NODE_IP)
        self.targets = workdir / "targets.json"
        self.query_log = workdir / "queries.log"
        self.targets.write_text("[]")
        config = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "query_log_file": str(self.query_log),
            },
            "scrape_configs": [
                {
                    "job_name": "sipfleet",
                    "scrape_timeout": "900ms",
                    "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "1s"}],
                }
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{NODE_IP}:{self.port}"

    def start(self) -> None:
        with (self.workdir / "prometheus.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    "/usr/bin/prometheus",
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address={NODE_IP}:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def asked_for(self, needle: str) -> bool:
        if not self.query_log.exists():
            return False
        for line in self.query_log.read_text().splitlines():
            query = json.loads(line).get("params", {}).get("query", "")
            if needle in query:
                return True
        return False


def sync_targets(kube: Cluster, prom: Prometheus, stop: threading.Event) -> None:
    """Keep the file_sd file equal to the fleet's Pods with an IP (every second)."""
    while not stop.wait(1.0):
        try:
            items = pods(kube, NS)
        except subprocess.SubprocessError:
            continue
        groups = [
            {"targets": [f"{p['status']['podIP']}:8080"], "labels": {"pod": p["metadata"]["name"]}}
            for p in items
            if p.get("status", {}).get("podIP")
        ]
        tmp = prom.targets.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(prom.targets)


@pytest.fixture
def prometheus(cluster: Cluster, tmp_path: Path) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path)
    prom.start()
    stop = threading.Event()
    syncer = threading.Thread(target=sync_targets, args=(cluster, prom, stop), daemon=True)
    syncer.start()
    try:
        yield prom
    finally:
        stop.set()
        syncer.join(10)
        prom.stop()


def test_scaling_follows_promql_and_stops_scale_in_without_metrics(
    cluster: Cluster, tmp_path: Path, prometheus: Prometheus
) -> None:
    operator_namespace(cluster, NS)
    op = Operator(cluster, NS, tmp_path / "operator.log").start()
    groups: list[Members] = []
    try:
        apply(
            cluster,
            NS,
            fleet(
                "prom",
                minNodes=0,
                maxNodes=3,
                membersPerNode=20,
                metrics={"prometheusUrl": prometheus.url, "staleAfterSeconds": 4},
            ),
            conference(
                "conf",
                "prom",
                scaling={
                    "targetLoad": 0.5,
                    "cooldownSeconds": 1,
                    "scaleDownStabilizationSeconds": 3,
                },
            ),
        )
        ip = main_ip(cluster, NS, "prom")
        wait_for("the group on the main server", lambda: status(cluster, NS, "conf").get("shards"))
        leavers = Members(ip, tmp_path, "leaver", LEAVERS, leaver=True, period_ms=1000).start()
        stayers = Members(ip, tmp_path, "stayer", STAYERS, leaver=False, period_ms=2500).start()
        groups += [leavers, stayers]
        joined = LEAVERS + STAYERS
        wait_for(
            "every member to join",
            lambda: len(leavers.joined()) + len(stayers.joined()) == joined,
            timeout=60,
            step=1,
        )
        # 20 members at 10 per server: one node, measured through Prometheus.
        wait_for(
            "scale-out to one node with fresh metrics",
            lambda: (
                len(node_names(cluster, NS)) == 1
                and (s := status(cluster, NS, "conf")).get("members") == joined
                and condition(s, "Degraded").get("status") == "False"
            ),
            timeout=60,
            step=1,
        )
        assert prometheus.asked_for("sipfleet_node_members")
        assert prometheus.asked_for(GROUP)
        nodes = node_names(cluster, NS)

        # Prometheus goes away; then most members leave. No scale-in may follow.
        prometheus.stop()
        send_group_message(ip, tmp_path, "leave-cmd")
        wait_for("the leavers to leave", lambda: len(leavers.left()) == LEAVERS, timeout=30)
        stale = wait_for(
            "the Degraded condition to blame the metrics",
            lambda: (
                (c := condition(status(cluster, NS, "conf"), "Degraded")).get("reason")
                == "MetricsStale"
                and c
            ),
            timeout=30,
        )
        assert stale["status"] == "True"
        time.sleep(10)  # well past the 3 s scale-down window and the 1 s cooldown
        assert node_names(cluster, NS) == nodes
        assert "ScaleIn" not in {reason for reason, _ in events(cluster, NS)}
        message = condition(status(cluster, NS, "conf"), "Degraded")["message"]
        assert "no scale-in" in message and "stale" in message

        # With Prometheus back, the 6 remaining members fit on the main server.
        prometheus.start()
        wait_for("scale-in to the main server", lambda: not node_names(cluster, NS), timeout=90)
        body = send_group_message(ip, tmp_path, "after")
        remaining = stayers.joined()
        wait_for(
            "the remaining members to get the MESSAGE",
            lambda: stayers.received(body) >= remaining,
            timeout=20,
        )
    finally:
        for g in groups:
            g.stop()
        cluster.kubectl("delete", "sipconference", "conf", "-n", NS, "--timeout=30s", check=False)
        op.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
