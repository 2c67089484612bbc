"""The demo's text output: plain lines, the servers table, the summary table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from sipfleet.demo.members import CrowdStats
from sipfleet.demo.observe import (
    ServerView,
    Snapshot,
    decision_text,
    pod_state,
    shard_members,
)
from sipfleet.demo.plot import write_png
from sipfleet.demo.timeline import Timeline
from sipfleet.demo.view import View, plain_line, servers_table, summary_table
from sipfleet.node.admin_types import NodeState

SNAP = Snapshot(
    12.0,
    (
        ServerView("demo-main", "main", "Ready", 10),
        ServerView("demo-node-1", "node", "Draining", 3),
        ServerView("demo-node-2", "node", "Starting", None),
    ),
    "Scaling",
    13,
    "scale-out: 13 members need 2 nodes",
    (),
)


def text_of(renderable: object) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_plain_line_lists_servers_and_counters() -> None:
    stats = CrowdStats(joined=13, redirects=3, transfers=1)
    line = plain_line(SNAP, "members joining", stats, Timeline().summary())
    assert line.startswith("[   12s] members joining: 13 members on 2 servers")
    assert "demo-node-1 3 (Draining)" in line
    assert "demo-node-2 - (Starting)" in line
    assert "redirects (302) 3" in line and "transfers (REFER) 1" in line
    assert "|  operator: scale-outs 0" in line


def test_servers_table_shows_load_bars() -> None:
    text = text_of(servers_table(SNAP, 10))
    assert "demo-main" in text and "██████████" in text
    assert "███·······" in text


def test_summary_table_reports_chats_against_expectations() -> None:
    stats = CrowdStats(joined=40, left=40)
    text = text_of(summary_table(Timeline().summary(), stats, [("hi", 38, 39)]))
    assert "40 / 40" in text
    assert "38 of 39 members" in text


def test_without_a_terminal_the_view_prints_plain_lines_at_intervals() -> None:
    console = Console(width=300, record=True, force_terminal=False)
    stats = CrowdStats()
    with View(console, 60, 10) as view:
        for t in (0.0, 1.0, 5.0):
            view.update(
                Snapshot(t, SNAP.servers, "Running", 0, "", ()), "act", stats, Timeline().summary()
            )
        view.note(6.0, "something happened")
    lines = console.export_text().splitlines()
    assert [line[:8] for line in lines] == ["[    0s]", "[    5s]", "[    6s]"]
    assert lines[-1] == "[    6s] something happened"


def test_pod_state_words() -> None:
    ready = {"metadata": {}, "status": {"podIP": "127.0.0.10", "conditions": [
        {"type": "Ready", "status": "True"}]}}  # fmt: skip
    assert pod_state(ready, False) == "Ready"
    assert pod_state(ready, True) == "Draining"
    assert pod_state({**ready, "metadata": {"deletionTimestamp": "x"}}, True) == "Terminating"
    assert pod_state({"metadata": {}, "status": {"podIP": "127.0.0.10"}}, False) == "Starting"
    assert pod_state({"metadata": {}, "status": {}}, False) == "Pending"


def test_shard_members_and_decision_text() -> None:
    state = NodeState.model_validate(
        {
            "name": "n",
            "role": "node",
            "domain": "x",
            "sip": {"host": "127.0.0.1", "port": 5060},
            "draining": False,
            "routes_generation": 0,
            "shards": [
                {"group": g, "uri": f"{g}-n", "members": n, "capacity": 5, "draining": False}
                for g, n in (("sip:a@x", 4), ("sip:b@x", 0))
            ],
            "routes": {"generation": 0, "groups": {}},
        }
    )
    assert shard_members(state, "sip:b@x") == 0
    assert shard_members(state, "sip:c@x") is None
    assert decision_text({}) == ""
    assert decision_text({"lastDecision": {"kind": "scale-in", "reason": "idle"}}) == (
        "scale-in: idle"
    )


def test_png_is_written_even_for_an_empty_timeline(tmp_path: Path) -> None:
    path = write_png(Timeline(), tmp_path / "sub" / "t.png", capacity=10)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_png_of_a_story(tmp_path: Path) -> None:
    tl = Timeline()
    tl.begin(0.0, "joining")
    for t in range(5):
        tl.record(float(t), {"demo-main": t, "demo-node-1": t // 2})
    tl.mark(2.0, "ScaleOut", "created demo-node-1")
    tl.mark(2.0, "Transfer", "move 1 members demo-node-1 -> demo-main")
    data = write_png(tl, tmp_path / "t.png", capacity=10).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
