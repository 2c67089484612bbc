"""A benchmark's work directory and real control plane, cleaned up after the run.

The control plane's state (etcd, the node's containerd root and image store)
is ~1.4 GB after one run; when the caller gave no --state-dir it lives in the
work directory and is removed at the end, so repeated runs do not fill /tmp.
The logs in the work directory are kept.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sipfleet.devcluster.controlplane import ControlPlane


@contextmanager
def bench_plane(
    prefix: str, state_dir: Path | None, keep: bool
) -> Iterator[tuple[Path, ControlPlane]]:
    """(work directory, control plane, not started): on exit the plane is taken down
    (also what a failed start left running) unless `keep`, and a default state
    directory is removed."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    state = state_dir or workdir / "kube"
    print(f"logs in {workdir}, control plane state in {state}", flush=True)
    plane = ControlPlane(state, out=lambda line: print(f"cluster: {line}", flush=True))
    try:
        yield workdir, plane
    finally:
        if not keep:
            plane.down()
            if state_dir is None:
                shutil.rmtree(state, ignore_errors=True)
