"""An operator killed in the middle of a scale-out converges after a restart.

Node Pods have deterministic names and every step is idempotent, so the new
process finds what the old one created: no duplicate Pods, no member lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from operator_harness import (
    Members,
    Operator,
    apply,
    conference,
    events,
    fleet,
    main_ip,
    node_names,
    operator_namespace,
    pods,
    send_group_message,
    status,
    wait_for,
)
from sipfleet.devcluster.cluster import Cluster

NS = "op-restart"
MEMBERS = 30


def test_killed_operator_converges_without_duplicates_or_losses(
    cluster: Cluster, tmp_path: Path
) -> None:
    operator_namespace(cluster, NS)
    first = Operator(cluster, NS, tmp_path / "operator-1.log", name="first").start()
    second = Operator(cluster, NS, tmp_path / "operator-2.log", name="second")
    members: Members | None = None
    try:
        apply(
            cluster,
            NS,
            fleet("restart", minNodes=0, maxNodes=4, membersPerNode=20),
            conference(
                "conf",
                "restart",
                scaling={"targetLoad": 0.5, "cooldownSeconds": 1, "maxNodesPerStep": 2},
            ),
        )
        ip = main_ip(cluster, NS, "restart")
        wait_for("the group on the main server", lambda: status(cluster, NS, "conf").get("shards"))
        members = Members(ip, tmp_path, "m", MEMBERS, leaver=False, period_ms=700).start()

        # Kill -9 as soon as the first scale-out step created a node Pod.
        wait_for("a scale-out to start", lambda: node_names(cluster, NS), timeout=60, step=0.2)
        first.kill()
        uids_at_kill = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(cluster, NS)}
        second.start()

        joined = wait_for(
            f"all {MEMBERS} members to join",
            lambda: j if len(j := members.joined()) == MEMBERS else None,
            timeout=90,
            step=1,
        )
        # 30 members at 10 per server: the main server and two nodes.
        wait_for(
            "the new operator to converge on two nodes",
            lambda: (
                len(node_names(cluster, NS)) == 2
                and (s := status(cluster, NS, "conf")).get("members") == MEMBERS
                and s.get("servers") == 3
            ),
            timeout=60,
            step=1,
        )
        names = [p["metadata"]["name"] for p in pods(cluster, NS)]
        assert sorted(names) == ["restart-main", "restart-node-1", "restart-node-2"]
        for name, uid in uids_at_kill.items():  # nothing the first one made was replaced
            now = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(cluster, NS)}
            assert now.get(name) == uid, f"{name} was recreated after the restart"
        shard_servers = {s["server"] for s in status(cluster, NS, "conf")["shards"]}
        assert shard_servers == set(names)
        assert sum(1 for r, _ in events(cluster, NS) if r == "ScaleOutFailed") == 0

        body = send_group_message(ip, tmp_path, "speaker")
        got = wait_for(
            "the MESSAGE to reach every member",
            lambda: r if (r := members.received(body)) >= joined else None,
            timeout=20,
        )
        assert got == joined
    finally:
        if members:
            members.stop()
        cluster.kubectl("delete", "sipconference", "conf", "-n", NS, "--timeout=30s", check=False)
        first.kill()
        first.stop()
        second.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


pytestmark = pytest.mark.timeout(240)
