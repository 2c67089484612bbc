"""Crash of any server (issue 11 (d) and (e)): kill -9 of a node's process, then of
the main server's process; every member comes back without any action of its own.

Real pieces only: the local control plane's API server and the real node (the
kubelet and containerd restart the killed container, restartPolicy Always),
the operator from its image (the Helm chart), and 60 members
that are sipp processes (tests/e2e/scenarios/resident.xml) logging where they
are. Each server replicates its members' dialogs to a holder (sip-node
replicas.py: a node's to the main server, the main server's to its first
node); the holder notices the restart or the silence (recovery.py) and adopts
each orphaned dialog with a re-INVITE (rejoin.py: these sipp members announce
no Replaces). The restarted container finds the hosted file its predecessor
left in the Pod's emptyDir (restore.py: it answers 503 + Retry-After, not
404, until its group is back) and, its holder having had every member, counts
none lost (no MembersLost Event). A group message goes out every second
throughout; the messages lost and duplicated are counted and printed, as is
the time until every member of the killed server is back.

Policy: 25 members per server at target load 0.8 (20 each), minNodes 2 and
maxNodes 2: main + 2 nodes, 60 members spread by 302 redirects; transfers
redirect-only, so the only moves are the crash recovery's.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from disruptions import SenderTicker
from kube_support import wait_for
from operator_harness import (
    Members,
    Operator,
    apply,
    conference,
    events,
    fleet,
    kill_server,
    main_ip,
    operator_namespace,
    pods,
    restarts,
    status,
)
from sipfleet.devcluster.cluster import Cluster

NS = "op-crash"
MEMBERS = 60
BACK_WITHIN = 10.0  # seconds: what the test enforces (the goal is 5 s; measured and printed)


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

    def ready(self) -> bool:
        found = pods(self.kube, NS)
        return len(found) == 3 and all(_ready(p) for p in found)

    def on(self, ip: str) -> set[str]:
        return {m for m, at in self.members.locations().items() if at == ip}

    def rejoins(self) -> Counter[str]:
        return Counter(p[1] for p in self.members.lines("REJOINED"))


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions", [])
    )


@pytest.fixture(scope="module")
def crashfleet(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """60 resident members on the main server and two nodes."""
    workdir = tmp_path_factory.mktemp("op-crash")
    operator_namespace(cluster, NS)
    op = Operator(cluster, NS, workdir / "operator.log").start()
    members: Members | None = None
    try:
        apply(
            cluster,
            NS,
            fleet("crash", minNodes=2, maxNodes=2, membersPerNode=25, treeFanout=2),
            conference(
                "conf",
                "crash",
                capacity={"membersPerServer": 25},
                scaling={
                    "targetLoad": 0.8,
                    "cooldownSeconds": 2,
                    "intervalSeconds": 1,
                    "scaleDownStabilizationSeconds": 600,
                },
                # Recovered members stay where they were brought back: moving the
                # excess off an over-full server afterwards is the REFER path's job,
                # with its own tests (test_operator_disruption.py).
                transfer={"mode": "redirect-only"},
            ),
        )
        ip = main_ip(cluster, NS, "crash")
        f = Fleet(cluster, workdir, ip, Members(ip, workdir, "res", MEMBERS, False, 100))
        wait_for("main + 2 Ready nodes", f.ready, timeout=90, step=1)
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
    """3 Ready servers, every member on one of them, and time for the dialogs to be
    replicated (a batch goes within 0.05 s of a change, a heartbeat every second)."""
    wait_for("main + 2 Ready nodes", f.ready, timeout=120, step=1)
    wait_for(
        "every member on a live server",
        lambda: (
            len(where := f.members.locations()) == MEMBERS
            and set(where.values()) <= set(f.ips().values())
        ),
        timeout=60,
    )
    time.sleep(3)


def crash(f: Fleet, pod: str, label: str) -> None:
    """kill -9 `pod`'s process with a group message every second; every member it had
    must be back (a REJOINED line) within BACK_WITHIN seconds."""
    settle(f)
    victim_ip = f.ips()[pod]
    victims = f.on(victim_ip)
    assert len(victims) >= 10, f"{pod} holds only {len(victims)} members"
    rejoined_before = f.rejoins()
    restarts_before = restarts(f.kube, NS, pod)
    reported_before = sum(
        r == "ServerRestarted" and m.startswith(f"{pod} restarted") for r, m in events(f.kube, NS)
    )
    ticker = SenderTicker(lambda: f.main_ip, f.workdir, f"{label}t").start()
    try:
        time.sleep(3)  # messages before the crash
        killed = time.monotonic()
        kill_server(f.kube, NS, pod)
        back: dict[str, float] = {}
        deadline = killed + 60
        while len(back) < len(victims) and time.monotonic() < deadline:
            now = time.monotonic()
            counts = f.rejoins()
            for m in victims:
                if m not in back and counts[m] > rejoined_before[m]:
                    back[m] = now - killed
            time.sleep(0.2)
        missing = victims - back.keys()
        wait_for(f"{pod} restarted", lambda: restarts(f.kube, NS, pod) > restarts_before, 60)
        wait_for(
            f"the operator's ServerRestarted Event for {pod}",
            lambda: (
                sum(
                    r == "ServerRestarted" and m.startswith(f"{pod} restarted")
                    for r, m in events(f.kube, NS)
                )
                > reported_before
            ),
            timeout=30,
        )
        settle(f)
        time.sleep(5)  # messages after everyone is back
    finally:
        ticker.stop()
    # The restarted container found the hosted file its predecessor left in the Pod's
    # emptyDir (sip-node restore.py: 503, not 404, for its groups until they were
    # back), and its holder had every member: none counted lost.
    log = f.kube.kubectl("-n", NS, "logs", pod).stdout
    assert "restarted: restoring 1 groups" in log, log[-2000:]
    lost = [m for r, m in events(f.kube, NS) if r == "MembersLost"]
    assert not lost, lost
    slowest = max(back.values(), default=float("nan"))
    lost, duplicated, total = _count(f, ticker.sent)
    after = [b for t, b in ticker.sent if t > killed + slowest + 2]
    missed_after = {b: MEMBERS - len(f.members.received(b)) for b in after}
    print(
        f"\n({label}) kill -9 {pod}: {len(back)}/{len(victims)} members back, the last after "
        f"{slowest:.2f} s (p50 {_median(back.values()):.2f} s); group messages: "
        f"{len(ticker.sent)} sent, {len(ticker.refused)} refused by the group "
        f"({len(ticker.retried)} retried after 503 + Retry-After), "
        f"{total} deliveries due, {lost} lost, {duplicated} duplicated"
    )
    assert not missing, f"members of {pod} not back within 60 s: {sorted(missing)}"
    assert slowest < BACK_WITHIN, f"the last member came back after {slowest:.2f} s"
    assert after, "no group message was sent once everyone was back"
    assert not any(missed_after.values()), f"messages after recovery missed: {missed_after}"


def _count(f: Fleet, sent: list[tuple[float, str]]) -> tuple[int, int, int]:
    """(lost, duplicated, due) deliveries of the accepted group messages."""
    per: Counter[tuple[str, str]] = Counter()
    for p in f.members.lines("RECV"):
        per[(p[1], " ".join(p[2:]))] += 1
    joined = f.members.joined()
    lost = duplicated = 0
    for _, body in sent:
        for m in joined:
            got = per[(m, body)]
            lost += got == 0
            duplicated += max(0, got - 1)
    return lost, duplicated, len(sent) * len(joined)


def _median(values: Any) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def test_kill_9_of_a_node_brings_its_members_back(crashfleet: Fleet) -> None:
    f = crashfleet
    settle(f)
    where = f.members.locations()
    counts = Counter(where.values())
    nodes = {n: ip for n, ip in f.ips().items() if "-node-" in n}
    busiest = max(nodes, key=lambda n: counts[nodes[n]])
    crash(f, busiest, "d")


def test_kill_9_of_the_main_server_brings_its_members_back(crashfleet: Fleet) -> None:
    crash(crashfleet, "crash-main", "e")


LOST = re.compile(r"^(\S+) restarted and ([0-9]+) members of ")


def _lost_events(f: Fleet) -> Counter[str]:
    """Server -> members its MembersLost Events say nobody brought back."""
    out: Counter[str] = Counter()
    for reason, message in events(f.kube, NS):
        if reason == "MembersLost" and (found := LOST.match(message)):
            out[found.group(1)] += int(found.group(2))
    return out


def _save_server_logs(f: Fleet, names: Iterable[str]) -> None:
    """Each server's log, this process's and the killed one's, into the workdir."""
    for name in names:
        for which, extra in (("now", ()), ("previous", ("--previous",))):
            out = f.kube.kubectl("logs", name, "-n", NS, *extra, check=False)
            (f.workdir / f"{name}-{which}.log").write_text(out.stdout + out.stderr)


def _listed(f: Fleet) -> Counter[str]:
    """Server -> members its shard lists, as the conference status shows them."""
    shards = status(f.kube, NS, "conf").get("shards") or []
    return Counter({sh["server"]: int(sh["members"]) for sh in shards})


def test_kill_9_of_every_server_counts_the_members_nobody_brings_back(
    crashfleet: Fleet,
) -> None:
    """A double failure, everywhere: the main server and both nodes (so every holder)
    killed at once. Nobody can bring anyone back; each restarted server learns from
    its restarted holder that it held none of its members (sip-node restore.py) and
    counts them, and the operator posts MembersLost Events covering all 60 residents.
    A server may also count a transient sender of (d) or (e) it still listed: sipp
    gives up on one that gets another sender's group MESSAGE while it waits for its
    own 200, without a BYE, and the server keeps it until a delivery to it fails.
    Runs last in this module: the fleet's members are gone after it."""
    f = crashfleet
    settle(f)
    ips = f.ips()
    where = Counter(f.members.locations().values())
    residents = Counter({name: where[ip] for name, ip in ips.items() if where[ip]})
    assert sum(residents.values()) == MEMBERS
    listed = _listed(f)
    before = _lost_events(f)
    assert not before, before  # (d) and (e) lost nobody
    restarts_before = {name: restarts(f.kube, NS, name) for name in ips}
    killed = time.monotonic()
    for name in ips:
        kill_server(f.kube, NS, name)
    for name in ips:
        wait_for(f"{name} restarted", lambda n=name: restarts(f.kube, NS, n) > restarts_before[n])

    def counted(got: Counter[str]) -> bool:
        """Each server counted its residents, and no more than it listed."""
        return set(got) <= set(ips) and all(
            residents[n] <= got[n] <= max(residents[n], listed[n]) for n in ips
        )

    try:
        wait_for(
            f"MembersLost Events for all {MEMBERS} members",
            lambda: counted(_lost_events(f)),
            timeout=60,
            step=1,
        )
    except pytest.fail.Exception:
        _save_server_logs(f, ips)
        got = _lost_events(f)
        assert counted(got), (
            f"counted {dict(got)}; residents {dict(residents)}, listed {dict(listed)}"
        )
        raise
    print(
        f"\n(double failure) kill -9 of every server: {dict(_lost_events(f))} counted lost "
        f"within {time.monotonic() - killed:.1f} s (residents {dict(residents)}, listed "
        f"{dict(listed)})"
    )
