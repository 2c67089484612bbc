"""Which real node another state dir's `up` takes down: only one whose holder is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sipfleet.devcluster import hostnet, procs
from sipfleet.devcluster.binaries import NodeBinaries
from sipfleet.devcluster.controlplane import ControlPlane
from sipfleet.devcluster.layout import Layout
from sipfleet.devcluster.realnode import RealNode, state_dir_of

pytestmark = pytest.mark.unit
BINS = NodeBinaries(*(Path(f"/b/{n}") for n in ("kl", "kp", "ks", "pause", "cd", "dns", "crictl")))


def test_the_host_record_leads_back_to_its_state_dir(tmp_path: Path) -> None:
    assert state_dir_of(RealNode(Layout(tmp_path), BINS).host_record) == tmp_path


def gone_process() -> procs.ProcessRecord:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    record = procs.record_of(child.pid, "holder")
    child.wait()
    assert record is not None and not procs.is_alive(record)
    return record


@pytest.fixture
def taken_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The state dirs `_take_down_abandoned` brought down (`down` itself is not run)."""
    monkeypatch.setattr(hostnet, "OWNER", tmp_path / "owner")
    downs: list[Path] = []
    monkeypatch.setattr(ControlPlane, "down", lambda self: downs.append(self.layout.root))
    return downs


def hold_host(state_dir: Path, holder: procs.ProcessRecord | None) -> None:
    record = RealNode(Layout(state_dir), BINS).host_record
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    hostnet.OWNER.write_text(f"{record}\n")
    if holder is not None:
        procs.save(holder, Layout(state_dir).holder)


def take_down_from(tmp_path: Path) -> None:
    ControlPlane(tmp_path / "mine", out=lambda line: None)._take_down_abandoned()


def test_a_node_whose_holder_is_gone_is_taken_down(tmp_path: Path, taken_down: list[Path]) -> None:
    hold_host(tmp_path / "killed", gone_process())
    take_down_from(tmp_path)
    assert taken_down == [tmp_path / "killed"]


def test_a_node_whose_state_dir_was_deleted_is_taken_down(
    tmp_path: Path, taken_down: list[Path]
) -> None:
    hostnet.OWNER.write_text(f"{tmp_path / 'deleted' / 'node' / 'host' / 'net.json'}\n")
    take_down_from(tmp_path)
    assert taken_down == [tmp_path / "deleted"]


def test_a_held_node_and_a_dev_up_node_are_left_alone(
    tmp_path: Path, taken_down: list[Path]
) -> None:
    hold_host(tmp_path / "live", procs.this_process("holder"))
    take_down_from(tmp_path)
    hostnet.OWNER.unlink()
    hold_host(tmp_path / "dev-up", None)  # `sipfleet dev up`: no holder
    take_down_from(tmp_path)
    assert taken_down == []


def test_nothing_to_do_without_an_owner_or_for_the_own_state_dir(
    tmp_path: Path, taken_down: list[Path]
) -> None:
    take_down_from(tmp_path)
    hold_host(tmp_path / "mine", gone_process())
    take_down_from(tmp_path)
    assert taken_down == []
