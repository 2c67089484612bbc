"""Two conferences on one fleet: each scales on its own nodes, the main server roots both.

A server replaces its whole routing table on every push, so the operator
must compose the main server's table from every group of the fleet; a push
for one conference must never drop the other's routes.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from operator_harness import (
    DOMAIN,
    Members,
    Operator,
    apply,
    conference,
    fleet,
    get_json,
    main_ip,
    operator_namespace,
    pods,
    send_group_message,
    status,
    wait_for,
)
from sipfleet.devcluster.cluster import Cluster

NS = "op-two"
PER_GROUP = 14

pytestmark = pytest.mark.timeout(240)


def main_routes(kube: Cluster, ip: str) -> dict[str, Any]:
    secret = get_json(kube, "secret", "two-admin-token", "-n", NS)
    token = base64.b64decode(secret["data"]["token"]).decode()
    req = urllib.request.Request(
        f"http://{ip}:8080/v1/routes", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        routes: dict[str, Any] = json.loads(resp.read())
    return routes


def shards(kube: Cluster, name: str) -> list[Any]:
    found: list[Any] = status(kube, NS, name).get("shards", [])
    return found


def reached(group: Members, body: str, members: set[str]) -> bool:
    return group.received(body) >= members


def only_beta_nodes(kube: Cluster) -> bool:
    owners = {p["metadata"]["labels"].get("sipfleet.io/conference") for p in pods(kube, NS, "node")}
    return owners == {"beta"}


def test_two_conferences_share_the_main_server_and_keep_apart(
    cluster: Cluster, tmp_path: Path
) -> None:
    operator_namespace(cluster, NS)
    op = Operator(cluster, NS, tmp_path / "operator.log").start()
    scaling = {"targetLoad": 0.5, "cooldownSeconds": 1}
    users = {"alpha": "conf-alpha", "beta": "conf-beta"}
    groups: dict[str, Members] = {}
    try:
        apply(
            cluster,
            NS,
            fleet("two", minNodes=0, maxNodes=4, membersPerNode=20),
            *(
                conference(name, "two", uri=f"sip:{user}@{DOMAIN}", scaling=scaling)
                for name, user in users.items()
            ),
        )
        ip = main_ip(cluster, NS, "two")
        for name in users:
            wait_for(f"{name} on the main server", partial(shards, cluster, name))
        for name, user in users.items():
            groups[name] = Members(
                ip, tmp_path, name, PER_GROUP, leaver=False, period_ms=1500, group_user=user
            ).start()

        # 14 members at 10 per server: each conference gets a node of its own.
        def converged() -> bool:
            nodes: dict[str, list[str]] = {}
            for p in pods(cluster, NS, "node"):
                owner = p["metadata"]["labels"].get("sipfleet.io/conference", "")
                nodes.setdefault(owner, []).append(p["metadata"]["name"])
            return (
                all(len(g.joined()) == PER_GROUP for g in groups.values())
                and all(len(nodes.get(n, [])) == 1 for n in users)
                and all(status(cluster, NS, n).get("servers") == 2 for n in users)
            )

        wait_for("both conferences to grow a node each", converged, timeout=120, step=1)
        table = main_routes(cluster, ip)["groups"]
        assert set(table) == {f"sip:{u}@{DOMAIN}" for u in users.values()}
        for name, user in users.items():
            servers = [e["server"] for e in table[f"sip:{user}@{DOMAIN}"]]
            shard_servers = [s["server"] for s in status(cluster, NS, name)["shards"]]
            assert servers[0] == "two-main" and set(servers) == set(shard_servers)

        for name, user in users.items():
            body = send_group_message(ip, tmp_path, f"speaker-{name}", group_user=user)
            members = groups[name].joined()
            wait_for(
                f"{name}'s MESSAGE to reach all of {name}",
                partial(reached, groups[name], body, members),
                timeout=20,
            )
            others = [g for n, g in groups.items() if n != name]
            assert all(not g.received(body) for g in others), "a message crossed groups"

        # Deleting alpha: its members get BYE, its node goes, beta is untouched.
        alpha_members = groups["alpha"].joined()
        cluster.kubectl("delete", "sipconference", "alpha", "-n", NS, "--timeout=60s")
        assert groups["alpha"].byes() >= alpha_members
        assert groups["beta"].byes() == set()
        wait_for("alpha's node to go", partial(only_beta_nodes, cluster), timeout=30)
        table = main_routes(cluster, ip)["groups"]
        assert set(table) == {f"sip:{users['beta']}@{DOMAIN}"}
        body = send_group_message(ip, tmp_path, "speaker-late", group_user=users["beta"])
        wait_for(
            "beta to still get messages",
            partial(reached, groups["beta"], body, groups["beta"].joined()),
            timeout=20,
        )
    finally:
        for g in groups.values():
            g.stop()
        for name in users:
            cluster.kubectl("delete", "sipconference", name, "-n", NS, "--timeout=30s", check=False)
        op.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
