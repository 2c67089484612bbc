"""Shared helpers of the chart tests (tests/unit/test_chart_*, tests/e2e/test_helm_*).

Renders charts/sipfleet with the real helm, splits the output into manifests,
and finds the chart's test tools (kubeconform, actionlint, Prometheus
Operator CRDs), installing them once through charts/install-tools.sh.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sipfleet.devcluster import binaries

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "sipfleet"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
INSTALL_TOOLS = REPO / "charts" / "install-tools.sh"
# The version helm renders for when no cluster is asked (a source build of
# helm may not know it); the local control plane runs the same.
KUBE_VERSION = binaries.KUBE_VERSION.removeprefix("v")

Manifest = dict[str, Any]


def helm() -> Path:
    """The helm binary; skips the test with the reason when it is not built yet."""
    path = binaries.helm_path()
    if not os.access(path, os.X_OK):
        pytest.skip(f"helm is not built at {path}: run `make kube-binaries`")
    return path


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with ``args``; on failure with ``check`` the assertion shows stderr."""
    proc = subprocess.run(
        [str(helm()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr}"
    return proc


def render(*values_files: Path, release: str = "sf", namespace: str = "sipfleet") -> str:
    """``helm template`` of the chart (CRDs included) as one YAML stream."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--include-crds"]
    args += ["--kube-version", KUBE_VERSION]
    for path in values_files:
        args += ["--values", str(path)]
    return run_helm(*args).stdout


def manifests(stream: str) -> list[Manifest]:
    """The non-empty documents of a YAML stream."""
    return [doc for doc in yaml.safe_load_all(stream) if doc]


def by_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


@functools.cache
def _install_tools() -> Path:
    """Run charts/install-tools.sh once per session (a no-op on a warm cache)."""
    proc = subprocess.run(
        ["bash", str(INSTALL_TOOLS)], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0 and shutil.which("go") is None:
        pytest.skip(f"the chart's test tools need Go to build: {proc.stderr.strip()}")
    assert proc.returncode == 0, f"{INSTALL_TOOLS} failed:\n{proc.stderr}"
    return binaries.cache_root()


def _newest(pattern: str) -> Path:
    found = sorted(_install_tools().glob(pattern))
    assert found, f"{INSTALL_TOOLS} left nothing matching {pattern}"
    return found[-1]


def tool(name: str) -> Path:
    """kubeconform or actionlint, built by charts/install-tools.sh."""
    return _newest(f"tools-{name}-*/bin/{name}")


def prometheus_operator_crds() -> list[Path]:
    """The ServiceMonitor, PodMonitor and PrometheusRule CRDs of the Prometheus Operator."""
    return sorted(_newest("prometheus-operator-crds-*").glob("*.yaml"))
