"""A node template change rolls the main server too, last and alone (issue 11,
item 2), on the real node: the fleet of tests/e2e/disruptions.py (a main server
and three nodes, 60 sipp residents) with ``rollout.mainServer: true``.

The new main Pod has a new Pod IP, so this module's group messages follow it: a
transient sipp member sends each (one a second) to the main server Pod's IP as
it is at that second. Checked: every node and then the main server replaced
(the main server's template-hash annotation changed), zero members lost, every
message the group accepted delivered to all 60 residents; messages refused
while the group URI had no server (the old main Pod gone, the new one not yet
serving) are counted and printed, and must all fall in that gap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from disruptions import (
    FLEET,
    MEMBERS,
    NS,
    Fleet,
    SenderTicker,
    ready,
    settle,
    start_fleet,
    stop_fleet,
)
from kube_support import find_json, wait_for
from operator_harness import GROUP, pods
from sipfleet.devcluster.cluster import Cluster
from sipfleet.node.restore import Hosted

HASH = "sipfleet.io/template-hash"
EXPECTED = "sipfleet.io/expected-groups"


def terminating(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


pytestmark = pytest.mark.timeout(600)  # the real node, the fleet and a whole rollout


def main_pod(f: Fleet) -> dict[str, Any] | None:
    pod: dict[str, Any] | None = find_json(f.kube, "pod", f"{FLEET}-main", "-n", NS)
    return pod


def main_ip_now(f: Fleet) -> str | None:
    """The main server Pod's IP while it is Ready and not stopping, else its IP anyway
    (a stopping main server still answers; None: no Pod or no IP yet)."""
    pod = main_pod(f)
    ip: str | None = ((pod or {}).get("status") or {}).get("podIP")
    return ip


@pytest.fixture(scope="module")
def fleet_rolling_main(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("op-main-roll")
    f: Fleet | None = None
    try:
        f = start_fleet(cluster, workdir, roll_main=True)
        f.ticker.stop()  # bound to the first main Pod's IP; a SenderTicker replaces it
        yield f
    finally:
        stop_fleet(cluster, f, workdir)


def test_a_template_change_rolls_the_main_server_last_losing_nobody(
    fleet_rolling_main: Fleet,
) -> None:
    f = fleet_rolling_main
    settle(f)

    def all_servers_ready() -> bool:
        return all(ready(p) and not terminating(p) for p in pods(f.kube, NS))

    old_main = main_pod(f)
    assert old_main is not None
    old_uid = old_main["metadata"]["uid"]
    old_hash = old_main["metadata"]["annotations"][HASH]
    old_nodes = {p["metadata"]["uid"] for p in pods(f.kube, NS, "node")}
    ticker = SenderTicker(lambda: main_ip_now(f), f.workdir, "mr").start()
    time.sleep(3)
    started = time.monotonic()
    patch = '{"spec":{"nodeTemplate":{"env":[{"name":"ROLLOUT_MARK","value":"main"}]}}}'
    f.kube.kubectl("patch", "sipfleet", FLEET, "-n", NS, "--type=merge", "-p", patch)
    nodes_done: float | None = None
    main_stopping: float | None = None
    main_gone: float | None = None
    main_back: float | None = None
    while main_back is None:
        now = time.monotonic() - started
        assert now < 240, (
            f"rollout stuck at {now:.0f}s (nodes done {nodes_done}, main stopping "
            f"{main_stopping}, gone {main_gone}): {f.describe()}"
        )
        current = main_pod(f)
        if nodes_done is None and not (
            {p["metadata"]["uid"] for p in pods(f.kube, NS, "node")} & old_nodes
        ):
            nodes_done = now
        if main_stopping is None and current and current["metadata"].get("deletionTimestamp"):
            main_stopping = now
            assert nodes_done is not None, "the main server stopped before the nodes rolled"
        if current is None or current["metadata"]["uid"] != old_uid:
            if main_gone is None:
                main_gone = now
            if current is not None and ready(current) and not terminating(current):
                main_back = now
        time.sleep(0.2)
    # The main server's members needed room on the nodes: a fourth node may
    # have started for them (it stays: no scale-in in this fleet), so every
    # server Pod is Ready rather than exactly main + 3.
    wait_for(f"every server Ready ({f.describe()})", all_servers_ready, timeout=60, step=1)
    wait_for("every member on a live server", f.on_live_servers, timeout=30)
    time.sleep(5)
    ticker.stop()
    new_main = main_pod(f)
    assert new_main is not None
    assert new_main["metadata"]["annotations"][HASH] != old_hash
    # The new Pod was told its group (a downward API file the server reads at start), so
    # a message sent before its shard is back gets 503 + Retry-After, not 404 (the
    # ticker waits and sends again: counted in `retried`).
    expected_groups = new_main["metadata"]["annotations"][EXPECTED].encode()
    assert Hosted.from_bytes(expected_groups).members == {GROUP: 0}
    st = (find_json(f.kube, "sipfleet", FLEET, "-n", NS) or {}).get("status") or {}
    wait_for(
        "the status to show the main server updated",
        lambda: (
            ((find_json(f.kube, "sipfleet", FLEET, "-n", NS) or {}).get("status") or {})
            .get("mainServer", {})
            .get("updated")
        ),
        timeout=30,
    )
    # Members: all 60 on live servers, none counted lost.
    assert f.on_live_servers(), f.describe()
    assert not f.lost_events(), f.lost_events()
    # Every accepted message reached every resident.
    expected = {f"res{i}" for i in range(1, MEMBERS + 1)}
    deadline = time.monotonic() + 20
    missing: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        missing = {b: m for _, b in ticker.sent if (m := expected - f.members.received(b))}
        if not missing:
            break
        time.sleep(1)
    # The main server stops taking joins at its SIGTERM (302 to a node, which
    # the transient sender does not follow) and is absent until its new Pod is
    # Ready and routed: refusals are expected from then until shortly after.
    assert main_stopping is not None and main_gone is not None
    gap = (started + main_stopping - 1, started + main_back + 5)
    outside = [round(t - started, 1) for t in ticker.refused if not gap[0] <= t <= gap[1]]
    print(
        f"main rollout: nodes done at {nodes_done}s, main stopping at {main_stopping:.1f}s, "
        f"its Pod gone at {main_gone:.1f}s, "
        f"new main Ready at {main_back:.1f}s; {len(ticker.sent)} messages accepted, "
        f"{len(ticker.refused)} refused (at {[round(t - started, 1) for t in ticker.refused]}), "
        f"{len(ticker.retried)} retried after 503 + Retry-After, "
        f"{len(missing)} accepted but missed; status {st.get('mainServer')}"
    )
    assert not missing, {b: sorted(m)[:5] for b, m in missing.items()}
    assert not outside, f"messages refused outside the main server's gap at {outside}"
