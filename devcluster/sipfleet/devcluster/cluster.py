"""A handle on a running local cluster: its paths and a kubectl runner.

Used by the pytest fixture (tests/e2e/conftest.py) and by `sipfleet demo`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from sipfleet.devcluster.binaries import Binaries
from sipfleet.devcluster.controlplane import ControlPlane


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    state_dir: Path
    bin_dir: Path
    kubectl_path: Path
    helm_path: Path

    @classmethod
    def of(cls, plane: ControlPlane, bins: Binaries) -> Cluster:
        return cls(
            kubeconfig=plane.layout.admin_kubeconfig,
            state_dir=plane.layout.root,
            bin_dir=bins.bin_dir,
            kubectl_path=bins.kubectl,
            helm_path=bins.helm,
        )

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster (text mode, output captured)."""
        return subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )
