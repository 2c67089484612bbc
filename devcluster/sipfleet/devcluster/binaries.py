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
KUBE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
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


def missing_binaries() -> list[Path]:
    """Binaries that are absent (or, in the cache, from an unfinished build)."""
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
