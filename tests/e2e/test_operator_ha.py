"""Two operators at once (two releases of the chart, one Pod each, competing for one
Lease): exactly one acts; the other takes over when it dies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from operator_harness import (
    Operator,
    apply,
    conference,
    fleet,
    main_ip,
    node_names,
    operator_namespace,
    status,
    wait_for,
)
from sipfleet.devcluster.cluster import Cluster

NS = "op-ha"
LEASE = "sipfleet-e2e"
RECONCILES = "sipfleet_operator_reconciles_total"
LEADER = "sipfleet_operator_leader"

pytestmark = pytest.mark.timeout(180)


def holder(kube: Cluster) -> str | None:
    lease = kube.kubectl("get", "lease", LEASE, "-n", NS, "-o", "json", check=False)
    if lease.returncode:
        return None
    spec = json.loads(lease.stdout).get("spec") or {}
    name: str | None = spec.get("holderIdentity")
    return name


def test_only_the_lease_holder_acts_and_a_standby_takes_over(
    cluster: Cluster, tmp_path: Path
) -> None:
    operator_namespace(cluster, NS)
    common = ("--peering", LEASE, "--lease-namespace", NS, "--lease-seconds", "6")
    ops = {
        ident: Operator(
            cluster, NS, tmp_path / f"{ident}.log", (*common, "--identity", ident), name=ident
        )
        for ident in ("alpha", "beta")
    }
    try:
        for op in ops.values():
            op.start()
        apply(cluster, NS, fleet("ha", minNodes=0, maxNodes=2), conference("conf", "ha"))
        main_ip(cluster, NS, "ha")
        wait_for("the conference to be served", lambda: status(cluster, NS, "conf").get("shards"))
        leader = wait_for("a Lease holder", lambda: holder(cluster))
        standby = next(i for i in ops if i != leader)

        # Several passes later the standby has still done nothing.
        wait_for(
            "the leader to reconcile a few times",
            lambda: ops[leader].metric(RECONCILES) >= 10,
            timeout=30,
        )
        assert ops[standby].alive()
        assert ops[standby].metric(RECONCILES) == 0
        assert ops[standby].metric(LEADER) == 0
        assert ops[leader].metric(LEADER) == 1
        assert holder(cluster) == leader
        # Liveness answers on both replicas, and the standby's Lease loop is watched too.
        for op in ops.values():
            body = op.health()
            assert body["alive"] is True and set(body["ages"]) == {"loop", "lease"}

        # The leader dies without releasing the Lease; the standby takes over and acts.
        ops[leader].kill()
        wait_for("the standby to take the Lease", lambda: holder(cluster) == standby, timeout=30)
        cluster.kubectl(
            "patch", "sipfleet", "ha", "-n", NS, "--type=merge", "-p", '{"spec":{"minNodes":1}}'
        )
        wait_for("the new leader to add a node", lambda: node_names(cluster, NS), timeout=30)
        assert ops[standby].metric(RECONCILES) > 0
        assert ops[standby].metric(LEADER) == 1
        # The per-fleet gauges follow the SipFleet status.
        sizes = {"namespace": NS, "fleet": "ha"}
        wait_for(
            "the fleet gauges to show the ready node",
            lambda: ops[standby].metric("sipfleet_operator_fleet_ready_nodes", **sizes) == 1,
            timeout=30,
        )
        assert ops[standby].metric("sipfleet_operator_fleet_nodes", **sizes) == 1
        assert ops[standby].metric("sipfleet_operator_fleet_max_nodes", **sizes) == 2
    finally:
        cluster.kubectl("delete", "sipconference", "conf", "-n", NS, "--timeout=30s", check=False)
        for op in ops.values():
            op.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
