"""The session fixture `cluster` (alias `real_cluster`): the real single-node
cluster of `sipfleet dev up` (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, containerd + runc, CNI bridge, the kubelet, kube-proxy and
CoreDNS), up once per session and shared by every e2e test, a namespace each.

It yields a `sipfleet.devcluster.cluster.Cluster` with `kubeconfig`,
`state_dir`, `bin_dir`, `kubectl_path`, `helm_path` and
`kubectl(*args, check=True, input=None)`, and stops every process it started
(and removes what it changed on the host) at the end of the session.

One real node fits on a machine (kube-proxy rules, cgroups and NodePorts are
host-wide). The session takes `REALNODE_LOCK` before its first real node
(waiting while another session holds it; a lock an ancestor holds, as in
``flock /tmp/sipfleet-realcluster.lock pytest ...``, counts as this
session's). The cluster is held by this pytest process: if the session is
killed, the next `up` takes the abandoned node down first.

Tests that bring up a cluster of their own (`sipfleet demo`, marked
``own_cluster``) run before every other e2e test, so before the shared
cluster exists.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sipfleet.devcluster import binaries, hostnet, procs
from sipfleet.devcluster.cluster import Cluster
from sipfleet.devcluster.controlplane import ControlPlane

REALNODE_LOCK = Path("/tmp/sipfleet-realcluster.lock")
"""flock()ed for a session's life by whichever session runs a real node."""
OWN_CLUSTER = "own_cluster"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path, for tests that start their own real node:
    the kubelet's sockets live under its state dir and a unix socket path has at most
    107 bytes, which pytest's `tmp_path` plus a long test name can exceed."""
    path = Path(tempfile.mkdtemp(prefix="sf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{OWN_CLUSTER}: starts its own real node, so it runs before the shared `cluster` exists",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests with their own cluster first (after any shuffling plugin): a second real
    node cannot start while the session's runs."""
    items.sort(key=lambda item: item.get_closest_marker(OWN_CLUSTER) is None)


def _flock_holders(path: Path) -> set[int]:
    """Pids holding an flock() on `path` (from /proc/locks)."""
    inode = path.stat().st_ino
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF" (blocked waiters: "1: -> FLOCK ...")
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].split(":")[-1] == str(inode):
            holders.add(int(fields[4]))
    return holders


@pytest.fixture(scope="session")
def realnode_lock() -> Iterator[None]:
    """The machine's real-node lock, for the rest of the session."""
    with REALNODE_LOCK.open("a") as lock:
        if not _flock_holders(REALNODE_LOCK) & procs.ancestry():
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"waiting for {REALNODE_LOCK}: another session runs the real node")
                fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def real_cluster(
    realnode_lock: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The real single-node cluster (tests share it, a namespace each)."""
    try:
        bins = binaries.locate(build_if_missing=False)
    except binaries.BinariesError as err:
        pytest.fail(f"the e2e tests need the Kubernetes binaries: {err}", pytrace=False)
    missing = binaries.missing_node_binaries()
    if missing:
        pytest.fail(f"the real node needs {missing}; run `make setup`", pytrace=False)
    state_dir = tmp_path_factory.mktemp("realnode")
    plane = ControlPlane(state_dir, out=print)
    try:
        plane.up(timeout=120.0, hold=True)
        yield Cluster.of(plane, bins)
    finally:
        plane.down()
    leftovers = procs.processes_under(state_dir)
    assert not leftovers, f"processes left behind in {state_dir}: {leftovers}"
    for bridge in (hostnet.NODE_BRIDGE, hostnet.POD_BRIDGE):
        assert not hostnet.link_exists(bridge), f"{bridge} left behind"
    plane.discard_images()  # pytest keeps the last sessions' tmp dirs


@pytest.fixture(scope="session")
def cluster(real_cluster: Cluster) -> Cluster:
    """The cluster every e2e test runs on: the real node."""
    return real_cluster
