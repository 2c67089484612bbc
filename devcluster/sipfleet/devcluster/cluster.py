"""A handle on a running local cluster: its paths and a kubectl runner.

Used by the pytest fixture (tests/e2e/conftest.py) and by `sipfleet demo`.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sipfleet.devcluster.binaries import Binaries
from sipfleet.devcluster.controlplane import ControlPlane


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call; its message ends with what kubectl said on stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()} kubectl said: {str(self.stderr or '').strip()}"


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
        """Run the real kubectl against this cluster (text mode, output captured).

        With ``check``, a failure raises `KubectlError`, whose message carries
        kubectl's stderr (a bare CalledProcessError would hide why it failed).
        """
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, result.args, result.stdout, result.stderr)
        return result


def host_address_towards(ip: str) -> str:
    """This host's source address for traffic to `ip` (a Pod IP).

    The pod bridge's address for the node's Pods, which a 127.0.0.1 source
    cannot reach. Raises OSError if there is no route to `ip`.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((ip, 5060))  # UDP: picks the route and source, sends nothing
        local: str = s.getsockname()[0]
        return local
