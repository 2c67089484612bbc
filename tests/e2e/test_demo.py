"""`sipfleet demo` end to end, as `make demo` runs it: the CLI brings its own
real node up, runs the operator and SIP members, shows the fleet scale out and
back in, and leaves nothing running, on the machine either.

Each test gives the demo a fresh state dir, so it starts (and must stop) its own
control plane, node, server pods and operator. One real node fits on a machine,
so these tests run before the session's shared cluster exists (``own_cluster``).
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sipfleet.devcluster import hostnet, procs
from sipfleet.devcluster.controlplane import COMPONENTS, ControlPlane

SIPFLEET = Path(sys.executable).parent / "sipfleet"
MEMBERS = 30
pytestmark = [pytest.mark.own_cluster, pytest.mark.usefixtures("realnode_lock")]


def assert_nothing_left(state_dir: Path) -> None:
    running = {c: r for c, r in ControlPlane(state_dir, out=lambda _: None).running().items() if r}
    assert not running, f"control plane components still running: {running}"
    leftovers = procs.processes_under(state_dir)
    assert not leftovers, f"processes left behind in {state_dir}: {leftovers}"
    for bridge in (hostnet.NODE_BRIDGE, hostnet.POD_BRIDGE):
        assert not hostnet.link_exists(bridge), f"{bridge} left behind"
    assert not hostnet.OWNER.exists(), "the host network is still claimed"
    ControlPlane(state_dir, out=lambda _: None).discard_images()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.timeout(420)
def test_demo_scales_out_and_back_in_and_cleans_up(short_tmp: Path) -> None:
    state_dir = short_tmp / "state"
    result = subprocess.run(
        [str(SIPFLEET), "demo", "--state-dir", str(state_dir), "--duration", "90",
         "--members", str(MEMBERS)],
        capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{out[-3000:]}\n{result.stderr}"

    summary = json.loads((state_dir / "demo-summary.json").read_text())
    assert summary["scaled_in_at"] is not None, f"not scaled in within the story:\n{out[-4000:]}"
    assert summary["joined"] == MEMBERS and summary["join_failures"] == 0
    assert summary["left"] == MEMBERS
    assert summary["peak_members"] == MEMBERS, "the servers' own counts never showed everyone"
    assert summary["scaled_out"] and summary["peak_servers"] >= 2
    assert summary["scale_outs"] >= 1
    assert summary["scaled_back_in"] and summary["final_servers"] == 1
    assert summary["nodes_deleted"] >= summary["peak_servers"] - 1
    assert summary["redirects"] > 0, "no member was ever sent to another server"
    for chat in summary["chats"]:
        assert chat["reached"] == chat["expected"], chat

    width, height = png_size(state_dir / "demo-timeline.png")
    assert width >= 800 and height >= 400
    # Without a terminal the view prints plain lines, including the operator's Events.
    assert "operator: ScaleOut:" in out and "operator: NodeDeleted:" in out
    assert f"timeline plot: {(state_dir / 'demo-timeline.png').resolve()}" in out
    assert_nothing_left(state_dir)


def _default_sigint() -> None:
    """Ctrl-C's default disposition in the demo process: pytest started as a background
    job of a non-interactive shell (``pytest ... &``) ignores SIGINT, and a child would
    inherit that and never see this test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.timeout(300)
def test_ctrl_c_mid_story_stops_everything(short_tmp: Path) -> None:
    state_dir = short_tmp / "state"
    log = short_tmp / "demo.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(SIPFLEET), "demo", "--state-dir", str(state_dir), "--duration", "60"],
            stdout=out, stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 150
        while "members joining:" not in log.read_text():
            assert proc.poll() is None, f"demo exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no join in time:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert "interrupted: stopping everything the demo started" in text
    (stopped,) = [line for line in text.splitlines() if line.startswith("cluster: stopped: ")]
    assert set(COMPONENTS) <= set(stopped.removeprefix("cluster: stopped: ").split(", ")), stopped
    assert_nothing_left(state_dir)
