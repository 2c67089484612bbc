"""The session fixture `cluster`: the local control plane, up once per session.

It yields a `sipfleet.devcluster.cluster.Cluster` with `kubeconfig`,
`state_dir`, `bin_dir`, `kubectl_path`, `helm_path` and
`kubectl(*args, check=True, input=None)`, and stops every process it started
at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sipfleet.devcluster import binaries, procs
from sipfleet.devcluster.cluster import Cluster
from sipfleet.devcluster.controlplane import ControlPlane


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
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
