"""The session fixtures `cluster` (the process kubelet) and `real_cluster`
(the real node: containerd, kubelet, kube-proxy, CoreDNS), each up once per
session.

Each yields a `sipfleet.devcluster.cluster.Cluster` with `kubeconfig`,
`state_dir`, `bin_dir`, `kubectl_path`, `helm_path` and
`kubectl(*args, check=True, input=None)`, and stops every process it started
at the end of the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sipfleet.devcluster import binaries, hostnet, procs
from sipfleet.devcluster.cluster import Cluster
from sipfleet.devcluster.controlplane import ControlPlane

E2E_NODE = "SIPFLEET_E2E_NODE"
"""``real`` makes `cluster` the real node too (the whole suite on it); default ``process``."""


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The cluster the suite runs on: `real_cluster` with SIPFLEET_E2E_NODE=real, else
    `process_cluster`."""
    real = os.environ.get(E2E_NODE, "process") == "real"
    chosen: Cluster = request.getfixturevalue("real_cluster" if real else "process_cluster")
    return chosen


@pytest.fixture(scope="session")
def process_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster with the process kubelet (tests of the process kubelet itself)."""
    try:
        bins = binaries.locate(build_if_missing=False)
    except binaries.BinariesError as err:
        pytest.fail(f"the e2e tests need the Kubernetes binaries: {err}", pytrace=False)
    state_dir = tmp_path_factory.mktemp("devcluster")
    plane = ControlPlane(state_dir, out=lambda line: None)
    try:
        plane.up()
        yield Cluster.of(plane, bins)
    finally:
        plane.down()
    leftovers = procs.processes_under(state_dir)
    assert not leftovers, f"processes left behind in {state_dir}: {leftovers}"


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The real single-node cluster (one per machine: tests share it, a namespace each)."""
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
        plane.up(node="real", timeout=120.0)
        yield Cluster.of(plane, bins)
    finally:
        plane.down()
    leftovers = procs.processes_under(state_dir)
    assert not leftovers, f"processes left behind in {state_dir}: {leftovers}"
    for bridge in (hostnet.NODE_BRIDGE, hostnet.POD_BRIDGE):
        assert not hostnet.link_exists(bridge), f"{bridge} left behind"
