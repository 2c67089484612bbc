"""No member lost and no group message lost when Kubernetes stops a server, when
the operator dies meanwhile, or when the API server is down.

Real pieces only: the local control plane's API server, controller manager
(its disruption controller keeps the budget's status) and kubelet (which sends
SIGTERM on a graceful delete and SIGKILL when the grace period ends), the
operator from its image installed by the Helm chart ("dies": its container's
process gets SIGKILL, tests/e2e/operator_harness.py), and members that are
sipp processes (tests/e2e/scenarios/resident.xml) logging where they are and
every group message they get.

The fleet (tests/e2e/disruptions.py): main + 3 nodes, 60 resident members and
a group message every second (scenarios/ticker.xml); a stopping node moves its
members at 4/s (grace period 25 s). Each test checks, over the ticks sent from
the disruption until the fleet settled: every tick answered 200 and received
by all 60 members (duplicates allowed and printed), every member on a live
server, no MembersNotMoved Event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from disruptions import (
    FLEET,
    GRACE,
    MEMBERS,
    NS,
    Disruption,
    Fleet,
    Result,
    api_server_down,
    counted,
    delete_pod,
    evict_node,
    operator_killed_during,
    roll_nodes,
    run,
    settle,
    start_fleet,
    stop_fleet,
)
from kube_support import find_json, wait_for
from operator_harness import events, evict, pods, send_group_message
from sipfleet.devcluster.cluster import Cluster


@pytest.fixture(scope="module")
def grown(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("op-disrupt")
    f: Fleet | None = None
    try:
        f = start_fleet(cluster, workdir)
        pdb = find_json(cluster, "pdb", f"{FLEET}-servers", "-n", NS)
        assert pdb and pdb["spec"]["minAvailable"] == 3
        yield f
    finally:
        stop_fleet(cluster, f, workdir)


def assert_nothing_lost(r: Result) -> None:
    """Zero members lost, every tick of the window delivered to every member."""
    t = r.ticks
    assert r.lost == 0, f"{r.scenario}: {r.lost} members lost ({r.note})"
    assert not t.unsent, f"{r.scenario}: ticks refused or timed out: {t.unsent}"
    assert not t.missed, f"{r.scenario}: ticks missed (tick: members) {t.missed}"
    assert t.sent >= 5, f"{r.scenario}: only {t.sent} ticks in the window: is the ticker alive?"
    print(
        f"\n{r.scenario}: {r.moved} members moved, 0 lost, settled in {r.settled_seconds:.1f}s; "
        f"ticks {t.first}-{t.last} ({t.sent}) all delivered, {t.duplicates} duplicates; {r.note}"
    )


def test_kubectl_delete_pod_moves_every_member_first(grown: Fleet) -> None:
    f = grown

    def delete_and_watch(f: Fleet) -> tuple[set[str], str]:
        victim, _, on_victim = f.busiest_node()
        assert on_victim, "the busiest node holds no member"
        uid = f.uid(victim)
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
        assert f.uid(victim) == uid, "the replacement came only after the victim was gone"
        wait_for("the victim to exit", lambda: f.uid(victim) != uid, timeout=GRACE + 10)
        took = time.monotonic() - deleted
        assert took < GRACE, f"the victim used its whole grace period ({took:.1f}s)"
        return on_victim, f"{victim} gone after {took:.1f}s (grace {GRACE}s)"

    assert_nothing_lost(run(f, "b delete pod", delete_and_watch))


def test_eviction_respects_the_budget_and_moves_every_member(grown: Fleet) -> None:
    f = grown

    def evict_two(f: Fleet) -> tuple[set[str], str]:
        wait_for(
            "the budget to allow one disruption",
            lambda: (
                (b := find_json(f.kube, "pdb", f"{FLEET}-servers", "-n", NS))
                and (b.get("status") or {}).get("disruptionsAllowed") == 1
            ),
            timeout=30,
        )
        first, _, on_first = f.busiest_node()
        first_uid = f.uid(first)
        second = next(n for n in f.ips() if "-node-" in n and n != first and f.running(n))
        second_uid = f.uid(second)
        allowed, answer = evict(f.kube, NS, first)
        assert allowed, answer
        # While the first server stops, the budget refuses a second eviction.
        refused, answer = evict(f.kube, NS, second)
        assert f.uid(first) == first_uid, "the first server exited before the 2nd eviction"
        assert not refused, "a second server was evicted while the first was still stopping"
        assert "disruption budget" in answer, answer
        # As `kubectl drain` does: retry until the budget allows it (after the
        # first server is gone and its replacement is Ready).
        started = time.monotonic()
        second_ip = f.ips()[second]
        while True:
            on_second = {m for m, ip in f.members.locations().items() if ip == second_ip}
            allowed, answer = evict(f.kube, NS, second)
            if allowed:
                break
            assert "disruption budget" in answer, answer
            assert time.monotonic() - started < GRACE + 60, "the budget never allowed the 2nd"
            time.sleep(1)
        waited = time.monotonic() - started
        assert f.uid(first) != first_uid, "the 2nd eviction came before the first was gone"
        wait_for("the second server to exit", lambda: f.uid(second) != second_uid, GRACE + 10)
        return on_first | on_second, f"2nd eviction refused by the budget for {waited:.1f}s"

    assert_nothing_lost(run(f, "a eviction (two, as kubectl drain)", evict_two))


def test_a_node_template_change_rolls_every_node_one_at_a_time(grown: Fleet) -> None:
    f = grown
    result = run(f, "c rolling update", roll_nodes)
    assert "at most 1 at once" in result.note, result.note  # maxUnavailable 1

    def rolled() -> dict[str, Any] | None:
        st = (find_json(f.kube, "sipfleet", FLEET, "-n", NS) or {}).get("status") or {}
        done = st.get("updatedNodes") == st.get("nodeCount") == 3
        return st if done else None

    st = wait_for("the SipFleet status to count 3 updated nodes", rolled, timeout=30)
    rolling = next(c for c in st["conditions"] if c["type"] == "Rolling")
    assert rolling["status"] == "False", rolling
    assert [r for r, _ in events(f.kube, NS)].count("RollingUpdate") >= 3
    assert_nothing_lost(result)


@pytest.mark.parametrize(
    ("name", "disrupt"),
    [
        ("f operator killed during eviction", evict_node),
        ("f operator killed during delete pod", delete_pod),
        ("f operator killed during rolling update", roll_nodes),
    ],
)
def test_the_operator_killed_mid_disruption_loses_nobody(
    grown: Fleet, name: str, disrupt: Disruption
) -> None:
    """SIGKILL of the operator right after the disruption starts, back 8 s later:
    the stopping node moves its members on its own (the routes it has), and the
    restarted operator re-plans from what it observes (a replacement, the rest of
    a rollout)."""
    assert_nothing_lost(run(grown, name, operator_killed_during(disrupt)))


def test_the_api_server_down_for_30s_disturbs_nobody(grown: Fleet) -> None:
    result = run(grown, "g API server down 30 s", api_server_down)
    assert result.moved == 0
    assert_nothing_lost(result)


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
        FLEET,
        "-n",
        NS,
        "--type=merge",
        "-p",
        '{"spec":{"disruption":{"gracePeriodSeconds":3}}}',
    )  # the old nodes still have 25 s each: they move their members as they go
    started = time.monotonic()
    while {p["metadata"]["uid"] for p in pods(f.kube, NS, "node")} & old_uids:
        assert time.monotonic() - started < 240, f"rollout stuck: {f.describe()}"
        time.sleep(1)
    settle(f)
    victim, victim_ip, on_victim = f.busiest_node()
    assert on_victim, "no member on a node: nothing to strand"
    # talker1 (the ticker's AOR) is a member too: the victim counts it if it is there.
    talker_there = {m for m, at in f.talker.locations().items() if at == victim_ip}
    uid = f.uid(victim)
    f.kube.kubectl("delete", "pod", victim, "-n", NS, "--wait=false")
    wait_for("the victim to exit", lambda: f.uid(victim) != uid, timeout=15)
    wait_for("main + 3 Ready servers", f.all_ready, timeout=120, step=1)
    # Who is still a member: everyone a group message reaches.
    body = send_group_message(f.main_ip, f.workdir, "after-short-grace")
    time.sleep(5)
    stranded = f.members.joined() - f.members.received(body)
    told = f.members.byes()
    reported = [m for r, m in events(f.kube, NS) if r == "MembersNotMoved" and victim in m]
    count = counted(reported)
    assert stranded == on_victim, "only the victim's members, and all of them, are cut"
    assert stranded <= told, f"members cut without a BYE: {stranded - told}"
    assert count == len(stranded) + len(talker_there), (
        f"Events count {count}, stranded {len(stranded)} (+ talker1 there: {talker_there})"
    )
    assert len(f.members.joined()) == MEMBERS
    print(
        f"\ngrace 3 s: delete {victim}: {len(stranded)} members not moved, each told (BYE) "
        f"and counted in {len(reported)} MembersNotMoved Event(s)"
    )
