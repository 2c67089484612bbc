"""Where things live in a state dir, and the ports a cluster uses.

kubeconfig                admin kubeconfig (system:masters)
state.json                ports, reused by later `up` calls
holder.json               the process the cluster belongs to, if any (`up(hold=True)`)
pki/                      CA, serving cert, client certs, service-account keys
etcd/                     etcd data
run/<component>.json      pid records (see procs.py)
logs/<component>.log      one log per component
node/                     the node: containerd/ (config, socket, root, state, certs.d,
                          net.d), kubelet/ (root dir, config), cni/ipam/,
                          kube-proxy.json, images.json, host/ (net.json, dirs.json)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Ports:
    etcd_client: int = 0
    etcd_peer: int = 0
    apiserver: int = 0
    controller_manager: int = 0
    kubelet: int = 0
    scheduler: int = 0
    kubelet_healthz: int = 0
    proxy_healthz: int = 0
    proxy_metrics: int = 0


@dataclass(frozen=True)
class Layout:
    """Paths inside one state dir."""

    root: Path

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def record(self, component: str) -> Path:
        return self.root / "run" / f"{component}.json"

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    def component_kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"

    @property
    def holder(self) -> Path:
        """The record of the process the cluster belongs to (see ControlPlane.up)."""
        return self.root / "holder.json"

    @property
    def node(self) -> Path:
        """The node's files (see the module docstring)."""
        return self.root / "node"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"


def load_ports(layout: Layout) -> Ports:
    try:
        data = json.loads(layout.state_file.read_text())
        return Ports(**data["ports"])
    except (OSError, ValueError, KeyError, TypeError):
        return Ports()
