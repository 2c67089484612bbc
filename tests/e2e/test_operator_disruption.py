"""No member lost when Kubernetes stops a server: `kubectl delete pod`, then the
eviction API against the fleet's PodDisruptionBudget.

Real pieces only: the local control plane's API server, controller manager
(its disruption controller keeps the budget's status) and kubelet (which sends
SIGTERM on a graceful delete and SIGKILL when the grace period ends), the
operator as a process with its ServiceAccount's token, and members that are
sipp processes (tests/e2e/scenarios/resident.xml) logging where they are.

Policy: 20 members per server at target load 0.5, minNodes 3 (main + 3 nodes
before anyone joins), and a deliberately slow graceful exit (2 members/s) so a
group message can be sent while a stopping server is still moving its members.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kube_support import find_json, wait_for
from operator_harness import (
    Members,
    Operator,
    apply,
    conference,
    events,
    evict,
    fleet,
    main_ip,
    operator_namespace,
    pods,
    send_group_message,
)
from sipfleet.devcluster.cluster import Cluster

NS = "op-disrupt"
MEMBERS = 36  # 4 servers at 10 each; a transient sender (37) needs no 5th
DRAIN_RATE = 2  # members/s: the grace period becomes ceil(20 / 2) + 15 = 25 s
GRACE = 25


@dataclass
class Fleet:
    kube: Cluster
    workdir: Path
    main_ip: str
    members: Members

    def ips(self) -> dict[str, str]:
        """Pod name -> Pod IP of every server Pod that has one."""
        return {
            p["metadata"]["name"]: ip
            for p in pods(self.kube, NS)
            if (ip := (p.get("status") or {}).get("podIP"))
        }

    def busiest_node(self) -> tuple[str, str, set[str]]:
        """(Pod, IP, its members) of the node Pod holding the most members."""
        where = self.members.locations()
        nodes = {
            name: ip for name, ip in self.ips().items() if "-node-" in name and _running(self, name)
        }
        counts = Counter(ip for ip in where.values() if ip in nodes.values())
        name, ip = max(nodes.items(), key=lambda n: counts[n[1]])
        return name, ip, {m for m, at in where.items() if at == ip}

    def describe(self) -> str:
        """Each server Pod: name, Ready, terminating, phase (for failure messages)."""
        return "; ".join(
            f"{p['metadata']['name']} ready={_ready(p)} "
            f"terminating={bool(p['metadata'].get('deletionTimestamp'))} "
            f"phase={(p.get('status') or {}).get('phase')}"
            for p in pods(self.kube, NS)
        )

    def all_ready(self, servers: int) -> bool:
        """``servers`` server Pods, none terminating, every one Ready."""
        found = pods(self.kube, NS)
        return len(found) == servers and all(
            not p["metadata"].get("deletionTimestamp") and _ready(p) for p in found
        )


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions", [])
    )


def _running(f: Fleet, name: str) -> bool:
    pod = find_json(f.kube, "pod", name, "-n", NS)
    return bool(pod) and not pod["metadata"].get("deletionTimestamp")


@pytest.fixture(scope="module")
def grown(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """36 resident members spread over the main server and three nodes."""
    workdir = tmp_path_factory.mktemp("op-disrupt")
    op = Operator(operator_namespace(cluster, NS, workdir), NS, workdir / "operator.log").start()
    members: Members | None = None
    try:
        apply(
            cluster,
            NS,
            fleet(
                "dis",
                minNodes=3,
                maxNodes=5,
                membersPerNode=20,
                treeFanout=2,
                disruption={"membersPerSecond": DRAIN_RATE},
            ),
            conference(
                "conf",
                "dis",
                capacity={"membersPerServer": 20},
                scaling={
                    "targetLoad": 0.5,
                    "cooldownSeconds": 2,
                    "intervalSeconds": 1,  # a pass each second reads a stopping node's count
                    "scaleDownStabilizationSeconds": 600,  # no scale-in in this test
                },
                transfer={"mode": "refer", "membersPerSecond": 20},
            ),
        )
        ip = main_ip(cluster, NS, "dis")
        f = Fleet(cluster, workdir, ip, Members(ip, workdir, "res", MEMBERS, leaver=False))
        wait_for("main + 3 Ready nodes", lambda: f.all_ready(4), timeout=90, step=1)
        pdb = wait_for(
            "the fleet's PodDisruptionBudget to count 4 healthy servers",
            lambda: (
                b
                if (b := find_json(cluster, "pdb", "dis-servers", "-n", NS))
                and (b.get("status") or {}).get("currentHealthy") == 4
                else None
            ),
            timeout=60,
        )
        assert pdb["spec"]["minAvailable"] == 3
        members = f.members.start()
        wait_for(
            f"{MEMBERS} residents to join",
            lambda: len(f.members.joined()) == MEMBERS,
            timeout=120,
            step=1,
        )
        yield f
    finally:
        if members is not None:
            members.stop()
        cluster.kubectl("delete", "sipconference", "conf", "-n", NS, "--timeout=60s", check=False)
        op.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def settle(f: Fleet) -> None:
    """Every member placed (no move in flight) and 4 Ready servers."""
    deadline = time.monotonic() + 120
    while not f.all_ready(4):
        if time.monotonic() > deadline:
            pytest.fail(f"no main + 3 Ready nodes after 120 s: {f.describe()}")
        time.sleep(1)
    wait_for(
        "every member to be on a server",
        lambda: len(f.members.locations()) == MEMBERS,
        timeout=30,
    )


def assert_everyone_gets(f: Fleet, who: str) -> None:
    body = send_group_message(f.main_ip, f.workdir, who)
    deadline = time.monotonic() + 30
    while len(got := f.members.received(body)) < MEMBERS and time.monotonic() < deadline:
        time.sleep(0.5)
    where = f.members.locations()
    missing = {m: where.get(m) for m in f.members.joined() - got}
    assert not missing, f"the MESSAGE from {who} missed (member: server IP) {missing}"


def wait_members_settled(f: Fleet, timeout: float = 30) -> None:
    """Wait until every member's last JOINED/MOVED line names a server that still
    exists: a node exits once its transfers are confirmed, which can come before
    the member's sipp logs its last move. A member truly left on a stopped server
    never logs one, and the wait fails."""
    wait_for(
        "every member on a live server",
        lambda: set(f.members.locations().values()) <= set(f.ips().values()),
        timeout=timeout,
    )


def assert_moved_away(f: Fleet, on_victim: set[str], victim_ip: str, moves_before: int) -> None:
    """Every member the stopped server had moved to another server; none lost."""
    moved = [(m, ip) for m, ip in f.members.moves()[moves_before:] if m in on_victim]
    assert {m for m, _ in moved} == on_victim, "members of the stopped server left behind"
    assert all(ip != victim_ip for _, ip in moved)
    where = f.members.locations()
    assert len(where) == MEMBERS
    assert not any(ip == victim_ip for ip in where.values())


def test_kubectl_delete_pod_moves_every_member_first(grown: Fleet) -> None:
    f = grown
    settle(f)
    victim, victim_ip, on_victim = f.busiest_node()
    assert on_victim, "the busiest node holds no member"
    moves_before = len(f.members.moves())
    victim_uid = _uid(f, victim)
    deleted = time.monotonic()
    f.kube.kubectl("delete", "pod", victim, "-n", NS, "--wait=false")

    # The operator starts the replacement while the victim is still stopping.
    wait_for(
        "a replacement node while the victim still exists",
        lambda: any(
            reason == "ScaleOut" and f"replace 1 terminating ({victim})" in message
            for reason, message in events(f.kube, NS)
        ),
        timeout=10,
    )
    assert _uid(f, victim) == victim_uid, "the replacement came only after the victim was gone"

    # Group messages still reach everyone while members are being moved.
    assert_everyone_gets(f, "during-delete")
    wait_for("the victim to exit", lambda: _uid(f, victim) != victim_uid, timeout=GRACE + 10)
    stopped_after = time.monotonic() - deleted
    assert stopped_after < GRACE, f"the victim used its whole grace period ({stopped_after:.1f}s)"
    assert_moved_away(f, on_victim, victim_ip, moves_before)
    assert not [m for r, m in events(f.kube, NS) if r == "MembersNotMoved"]
    settle(f)
    assert_everyone_gets(f, "after-delete")
    print(
        f"\ndelete {victim}: {len(on_victim)} members moved, 0 lost, pod gone after "
        f"{stopped_after:.1f}s (grace {GRACE}s)"
    )


def test_eviction_respects_the_budget_and_moves_every_member(grown: Fleet) -> None:
    f = grown
    settle(f)
    wait_for(
        "the budget to allow one disruption",
        lambda: (
            (b := find_json(f.kube, "pdb", "dis-servers", "-n", NS))
            and (b.get("status") or {}).get("disruptionsAllowed") == 1
        ),
        timeout=30,
    )
    first, first_ip, on_first = f.busiest_node()
    first_uid = _uid(f, first)  # node names are reused: the Pod is its UID
    second = next(n for n in f.ips() if "-node-" in n and n != first and _running(f, n))
    second_uid = _uid(f, second)
    moves_before = len(f.members.moves())
    allowed, answer = evict(f.kube, NS, first)
    assert allowed, answer

    # While the first server stops, the budget refuses a second eviction.
    refused, answer = evict(f.kube, NS, second)
    assert _uid(f, first) == first_uid, "the first server exited before the 2nd eviction"
    assert not refused, "a second server was evicted while the first was still stopping"
    assert "disruption budget" in answer, answer

    # As `kubectl drain` does: retry until the budget allows it (after the
    # first server is gone and its replacement is Ready).
    started = time.monotonic()
    on_second: set[str] = set()
    seen = ""
    second_ip = f.ips()[second]
    while True:
        on_second = {m for m, ip in f.members.locations().items() if ip == second_ip}
        moves_second = len(f.members.moves())
        allowed, answer = evict(f.kube, NS, second)
        if allowed:
            budget = find_json(f.kube, "pdb", "dis-servers", "-n", NS) or {}
            seen = f"{f.describe()}; budget spec {budget.get('spec')} status {budget.get('status')}"
            break
        assert "disruption budget" in answer, answer
        assert time.monotonic() - started < GRACE + 60, "the budget never allowed the 2nd"
        time.sleep(1)
    waited = time.monotonic() - started
    assert _uid(f, first) != first_uid, f"the 2nd eviction came before the first was gone: {seen}"
    wait_for("the second server to exit", lambda: _uid(f, second) != second_uid, timeout=GRACE + 10)
    assert_moved_away(f, on_first, first_ip, moves_before)
    assert_moved_away(f, on_second, second_ip, moves_second)
    assert not [m for r, m in events(f.kube, NS) if r == "MembersNotMoved"]
    settle(f)
    assert_everyone_gets(f, "after-evictions")
    print(
        f"\nevict {first}: {len(on_first)} members moved; evict {second}: refused by the "
        f"budget for {waited:.1f}s, then {len(on_second)} members moved; 0 lost"
    )


def _uid(f: Fleet, name: str) -> str | None:
    """The UID of the Pod named ``name`` now (None: no such Pod)."""
    pod = find_json(f.kube, "pod", name, "-n", NS)
    return str(pod["metadata"]["uid"]) if pod else None


def test_a_node_template_change_rolls_every_node_one_at_a_time(grown: Fleet) -> None:
    f = grown
    settle(f)
    before = {n: ip for n, ip in f.ips().items() if "-node-" in n}
    old_uids = {p["metadata"]["uid"] for p in pods(f.kube, NS, "node")}  # names are reused
    moves_before = len(f.members.moves())
    started = time.monotonic()
    f.kube.kubectl(
        "patch",
        "sipfleet",
        "dis",
        "-n",
        NS,
        "--type=merge",
        "-p",
        '{"spec":{"nodeTemplate":{"env":[{"name":"SIPFLEET_LOG_LEVEL","value":"INFO"}]}}}',
    )
    most_stopping = 0
    sent = ""
    while True:
        found = pods(f.kube, NS)
        stopping = [p for p in found if p["metadata"].get("deletionTimestamp")]
        most_stopping = max(most_stopping, len(stopping))
        if stopping and not sent:  # a group message while the first node moves its members
            sent = send_group_message(f.main_ip, f.workdir, "during-rollout")
        fleet_st = (find_json(f.kube, "sipfleet", "dis", "-n", NS) or {}).get("status") or {}
        uids = {p["metadata"]["uid"] for p in found}
        done = fleet_st.get("updatedNodes") == fleet_st.get("nodeCount") == 3
        if done and not uids & old_uids and f.all_ready(4):
            break
        assert time.monotonic() - started < 180, f"rollout stuck: {f.describe()}; {fleet_st}"
        time.sleep(0.5)
    took = time.monotonic() - started
    assert most_stopping == 1, f"{most_stopping} nodes were stopping at once (maxUnavailable 1)"
    rolling = next(c for c in fleet_st["conditions"] if c["type"] == "Rolling")
    assert rolling["status"] == "False", rolling
    reasons = [r for r, _ in events(f.kube, NS)]
    assert reasons.count("RollingUpdate") >= 3
    assert not [m for r, m in events(f.kube, NS) if r == "MembersNotMoved"]
    # Every member of an old node moved; nobody is left on a stopped server.
    wait_members_settled(f)
    where = f.members.locations()
    assert len(where) == MEMBERS
    assert not set(where.values()) & set(before.values()) - set(f.ips().values())
    moved = {m for m, _ in f.members.moves()[moves_before:]}
    assert sent, "no node was ever seen stopping"
    got_during = f.members.received(sent)
    settle(f)
    assert_everyone_gets(f, "after-rollout")
    assert len(f.members.received(sent)) == MEMBERS, "a member missed the message sent mid-rollout"
    print(
        f"\nrollout of 3 nodes: {took:.1f}s, {len(moved)} members moved, at most "
        f"{most_stopping} node stopping at once, 0 lost; mid-rollout message reached "
        f"{len(got_during)}/{MEMBERS} at once"
    )


def test_members_a_too_short_grace_period_cannot_move_are_counted_and_reported(
    grown: Fleet,
) -> None:
    """Last (it loses members on purpose): nodes rolled to a grace period of 3 s,
    all a stopping node keeps for reporting and closing, so when one is deleted
    none of its members can move. Each must be counted (Event MembersNotMoved)
    and told (BYE), never dropped silently."""
    f = grown
    settle(f)
    old_uids = {p["metadata"]["uid"] for p in pods(f.kube, NS, "node")}
    f.kube.kubectl(
        "patch",
        "sipfleet",
        "dis",
        "-n",
        NS,
        "--type=merge",
        "-p",
        '{"spec":{"disruption":{"gracePeriodSeconds":3}}}',
    )  # the old nodes still have 25 s each: they move their members as they go
    started = time.monotonic()
    while {p["metadata"]["uid"] for p in pods(f.kube, NS, "node")} & old_uids:
        assert time.monotonic() - started < 180, f"rollout stuck: {f.describe()}"
        time.sleep(1)
    settle(f)
    wait_members_settled(f)
    victim, _, on_victim = f.busiest_node()
    assert on_victim, "no member on a node: nothing to strand"
    victim_uid = _uid(f, victim)
    f.kube.kubectl("delete", "pod", victim, "-n", NS, "--wait=false")
    wait_for("the victim to exit", lambda: _uid(f, victim) != victim_uid, timeout=15)
    settle(f)
    # Who is still a member: everyone a group message reaches.
    body = send_group_message(f.main_ip, f.workdir, "after-short-grace")
    time.sleep(5)
    stranded = f.members.joined() - f.members.received(body)
    told = f.members.byes()
    reported = [m for r, m in events(f.kube, NS) if r == "MembersNotMoved" and victim in m]
    counted = sum(int(m.split("move ", 1)[1].split(" ", 1)[0]) for m in reported)
    assert stranded == on_victim, "only the victim's members, and all of them, are cut"
    assert stranded <= told, f"members cut without a BYE: {stranded - told}"
    assert counted == len(stranded), f"Events count {counted}, stranded {len(stranded)}"
    print(
        f"\ngrace 3 s: delete {victim}: {len(stranded)} members not moved, each told (BYE) "
        f"and counted in {len(reported)} MembersNotMoved Event(s)"
    )
