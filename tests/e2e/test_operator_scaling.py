"""The operator scales a conference out as members join and back in as they leave.

Real pieces only: the API server of the local control plane, server Pods run by
the real node's kubelet, the operator from its image installed by the Helm
chart, and members that are sipp processes (tests/e2e/scenarios/resident.xml).

Policy used: 20 members per server at a target load of 0.5, so the operator
adds a server for every 10 members and joins never find the fleet full;
tree fanout 2, so six servers form a three-level distribution tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from operator_harness import (
    Members,
    Operator,
    apply,
    condition,
    conference,
    events,
    everyone,
    fleet,
    main_ip,
    node_names,
    operator_namespace,
    save_events,
    send_group_message,
    status,
    wait_for,
)
from sipfleet.devcluster.cluster import Cluster

NS = "op-scale"
LEAVERS = 45
STAYERS = 14


@dataclass
class Grown:
    kube: Cluster
    workdir: Path
    main_ip: str
    leavers: Members
    stayers: Members

    @property
    def groups(self) -> tuple[Members, Members]:
        return (self.leavers, self.stayers)


@pytest.fixture(scope="module")
def grown(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grown]:
    """59 resident members joined through the main server's URI, one per ~0.75 s."""
    workdir = tmp_path_factory.mktemp("op-scale")
    operator_namespace(cluster, NS)
    op = Operator(cluster, NS, workdir / "operator.log").start()
    started: list[Members] = []
    try:
        apply(
            cluster,
            NS,
            fleet("scale", minNodes=1, maxNodes=5, membersPerNode=20, treeFanout=2),
            conference(
                "conf",
                "scale",
                capacity={"membersPerServer": 20},
                scaling={
                    "targetLoad": 0.5,
                    "cooldownSeconds": 2,
                    "scaleDownStabilizationSeconds": 5,
                    "maxNodesPerStep": 2,
                },
                transfer={"mode": "refer", "membersPerSecond": 20},
            ),
        )
        ip = main_ip(cluster, NS, "scale")
        wait_for("the group on the main server", lambda: status(cluster, NS, "conf").get("shards"))
        started.append(Members(ip, workdir, "leaver", LEAVERS, leaver=True, period_ms=1000).start())
        started.append(
            Members(
                ip, workdir, "stayer", STAYERS, leaver=False, period_ms=3000, trace=True
            ).start()
        )
        yield Grown(cluster, workdir, ip, started[0], started[1])
    finally:
        for group in started:
            group.stop()
        save_events(cluster, NS, workdir / "events.txt")
        cluster.kubectl("delete", "sipconference", "conf", "-n", NS, "--timeout=30s", check=False)
        op.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def test_scale_out_spreads_60_members_and_a_message_reaches_all(grown: Grown) -> None:
    kube = grown.kube
    joined = wait_for(
        f"{LEAVERS + STAYERS} residents to join (a rejected one never does)",
        lambda: (
            j if len(j := everyone(grown.groups, Members.joined)) == LEAVERS + STAYERS else None
        ),
        timeout=150,
        step=1,
    )
    st = wait_for(
        "the status to count every member on >= 3 servers",
        lambda: (
            (s := status(kube, NS, "conf")).get("members") == len(joined)
            and s.get("servers", 0) >= 3
            and s
        ),
        timeout=30,
    )
    servers_used = {
        p[3].split("@")[1] for p in grown.leavers.lines("JOINED") + grown.stayers.lines("JOINED")
    }
    assert len(servers_used) >= 3, f"members landed on {servers_used}"
    assert len(node_names(kube, NS)) + 1 >= st["servers"]
    assert any(reason == "ScaleOut" for reason, _ in events(kube, NS))

    # The 60th member joins through the main server's URI and speaks once.
    body = send_group_message(grown.main_ip, grown.workdir, "speaker")
    got = wait_for(
        "the MESSAGE to reach all 59 other members",
        lambda: r if (r := everyone(grown.groups, lambda g: g.received(body))) >= joined else None,
        timeout=20,
    )
    assert got == joined


def test_scale_in_drains_and_deletes_nodes_without_losing_members(grown: Grown) -> None:
    kube = grown.kube
    stayers = wait_for(
        "every stayer to have joined",
        lambda: j if len(j := grown.stayers.joined()) == STAYERS else None,
        timeout=60,
    )
    nodes_before = node_names(kube, NS)
    send_group_message(grown.main_ip, grown.workdir, "leave-cmd")
    wait_for(
        f"{LEAVERS} members to leave", lambda: len(grown.leavers.left()) == LEAVERS, timeout=30
    )

    # 14 members at 10 per server need the main server plus one node (minNodes 1).
    wait_for(
        "the operator to drain and delete nodes down to one",
        lambda: (
            len(node_names(kube, NS)) == 1
            and (s := status(kube, NS, "conf")).get("servers") == 2
            and s.get("members") == STAYERS
        ),
        timeout=120,
        step=1,
    )
    st = status(kube, NS, "conf")
    assert condition(st, "Ready")["status"] == "True"
    assert set(node_names(kube, NS)) < set(nodes_before)
    reasons = {reason for reason, _ in events(kube, NS)}
    assert {"ScaleIn", "NodeDeleted"} <= reasons
    assert not reasons & {"MembersDropped", "MembersNotMoved"}, events(kube, NS)

    # No remaining member was lost: each still gets group messages.
    body = send_group_message(grown.main_ip, grown.workdir, "after")
    got = wait_for(
        "the MESSAGE to reach every remaining member",
        lambda: r if (r := grown.stayers.received(body)) >= stayers else None,
        timeout=20,
    )
    assert got == stayers
    assert grown.stayers.left() == set()
