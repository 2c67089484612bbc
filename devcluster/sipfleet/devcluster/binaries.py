"""Find the Kubernetes and helm binaries the local control plane runs.

They are built once from source by ``devcluster/build-kube-binaries.sh`` into
a cache keyed by version (``~/.cache/sipfleet`` or ``$SIPFLEET_CACHE``); a
``.complete`` file marks a finished build. ``KUBEBUILDER_ASSETS`` overrides
the directory of the Kubernetes binaries (as in controller-runtime's envtest).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

KUBE_VERSION = "v1.36.3"
HELM_VERSION = "v3.21.4"
CONTAINERD_VERSION = "v2.3.7"
COREDNS_VERSION = "v1.14.7"
CRICTL_VERSION = "v1.37.0"
KUBE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "pause")
RUNC = Path("/usr/sbin/runc")
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "portmap")
"""The CNI plugins the node's conflist uses (Debian's containernetworking-plugins)."""
BUILD_SCRIPT = "build-kube-binaries.sh"


class BinariesError(RuntimeError):
    """A binary is missing and cannot be built here; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every binary the local cluster needs."""

    bin_dir: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path


def cache_root() -> Path:
    """The cache root: ``$SIPFLEET_CACHE`` or ``~/.cache/sipfleet``."""
    override = os.environ.get("SIPFLEET_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "sipfleet"


def kube_bin_dir() -> Path:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        return Path(assets)
    return cache_root() / f"kube-{KUBE_VERSION}" / "bin"


def helm_path() -> Path:
    return cache_root() / f"helm-{HELM_VERSION}" / "bin" / "helm"


@dataclass(frozen=True)
class NodeBinaries:
    """Absolute paths of what the real node runs (see build-kube-binaries.sh)."""

    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path
    pause: Path
    containerd_bin_dir: Path
    coredns: Path
    crictl: Path
    runc: Path = RUNC
    cni_bin_dir: Path = CNI_BIN_DIR

    @property
    def containerd(self) -> Path:
        return self.containerd_bin_dir / "containerd"

    @property
    def ctr(self) -> Path:
        return self.containerd_bin_dir / "ctr"


def node_binaries() -> NodeBinaries:
    """The real node's binaries (paths only; see `missing_node_binaries`)."""
    root = cache_root()
    kube = root / f"kube-node-{KUBE_VERSION}" / "bin"
    return NodeBinaries(
        kubelet=kube / "kubelet",
        kube_proxy=kube / "kube-proxy",
        kube_scheduler=kube / "kube-scheduler",
        pause=kube / "pause",
        containerd_bin_dir=root / f"containerd-{CONTAINERD_VERSION}" / "bin",
        coredns=root / f"coredns-{COREDNS_VERSION}" / "bin" / "coredns",
        crictl=root / f"crictl-{CRICTL_VERSION}" / "bin" / "crictl",
    )


def missing_node_binaries() -> list[Path]:
    """The real node's binaries that are absent or from an unfinished build."""
    bins = node_binaries()
    built = (bins.kubelet, bins.containerd, bins.coredns, bins.crictl)
    missing = [p for p in built if not (p.parent.parent / ".complete").is_file()]
    wanted = [bins.kube_proxy, bins.kube_scheduler, bins.pause, bins.ctr, *built]
    missing += [p for p in wanted if not os.access(p, os.X_OK) and p not in missing]
    if not os.access(bins.runc, os.X_OK):
        missing.append(bins.runc)
    missing += [
        bins.cni_bin_dir / plugin
        for plugin in CNI_PLUGINS
        if not os.access(bins.cni_bin_dir / plugin, os.X_OK)
    ]
    return missing


def missing_binaries() -> list[Path]:
    """Control-plane binaries that are absent (or, in the cache, from an unfinished build)."""
    missing: list[Path] = []
    kube_dir = kube_bin_dir()
    kube_complete = "KUBEBUILDER_ASSETS" in os.environ or (kube_dir.parent / ".complete").is_file()
    for name in KUBE_BINARIES:
        path = kube_dir / name
        if not kube_complete or not os.access(path, os.X_OK):
            missing.append(path)
    helm = helm_path()
    if not (helm.parent.parent / ".complete").is_file() or not os.access(helm, os.X_OK):
        missing.append(helm)
    return missing


def find_build_script() -> Path | None:
    """The build script of a source checkout (the package lives next to it)."""
    candidate = Path(__file__).resolve().parents[2] / BUILD_SCRIPT
    return candidate if candidate.is_file() else None


def source_checkout() -> Path | None:
    """The sipfleet checkout this package runs from (None when installed from a wheel)."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() and (root / "images").is_dir() else None


def build() -> None:
    """Run the build script (minutes, once); raise BinariesError if it cannot."""
    script = find_build_script()
    if script is None:
        raise BinariesError(
            "Kubernetes binaries are missing and the build script is not next to this "
            "package; run `make kube-binaries` in a sipfleet checkout"
        )
    if shutil.which("go") is None:
        raise BinariesError(
            "Kubernetes binaries are missing and Go is not installed; install Go >= 1.26 "
            "(https://go.dev/doc/install), then run `make kube-binaries`"
        )
    result = subprocess.run(["bash", str(script)], check=False)
    if result.returncode != 0:
        raise BinariesError(f"{script} failed (exit {result.returncode}); see its log above")


def locate(*, build_if_missing: bool = True) -> Binaries:
    """Return the binaries, building them first if allowed and needed."""
    if missing_binaries():
        if not build_if_missing:
            names = ", ".join(str(p) for p in missing_binaries())
            raise BinariesError(f"missing {names}; run `make kube-binaries`")
        build()
        still = missing_binaries()
        if still:
            names = ", ".join(str(p) for p in still)
            raise BinariesError(f"still missing after the build: {names}")
    kube_dir = kube_bin_dir()
    return Binaries(
        bin_dir=kube_dir,
        etcd=kube_dir / "etcd",
        kube_apiserver=kube_dir / "kube-apiserver",
        kube_controller_manager=kube_dir / "kube-controller-manager",
        kubectl=kube_dir / "kubectl",
        helm=helm_path(),
    )
