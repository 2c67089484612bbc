"""Shared helpers of the chart tests (tests/unit/test_chart_*, tests/e2e/test_helm_*).

Renders charts/sipfleet with the real helm, splits the output into manifests,
and finds the chart's test tools (kubeconform, actionlint, Prometheus
Operator CRDs), installing them once through charts/install-tools.sh.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sipfleet.devcluster import binaries
from sipfleet.devcluster.cluster import Cluster

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "sipfleet"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
INSTALL_TOOLS = REPO / "charts" / "install-tools.sh"
# The version helm renders for when no cluster is asked (a source build of
# helm may not know it); the local control plane runs the same.
KUBE_VERSION = binaries.KUBE_VERSION.removeprefix("v")

Manifest = dict[str, Any]


# Set to a kubeconfig to run the e2e chart tests on that cluster (kind in the
# GitHub workflow, with the images loaded) instead of the local control plane.
EXTERNAL_KUBECONFIG = "SIPFLEET_E2E_KUBECONFIG"


def helm() -> Path:
    """The helm built for the project, else the one on PATH."""
    path = binaries.helm_path()
    if os.access(path, os.X_OK):
        return path
    found = shutil.which("helm")
    if found is None:
        pytest.fail(f"no helm at {path} nor on PATH: run `make kube-binaries`", pytrace=False)
    return Path(found)


def chart_cluster(request: pytest.FixtureRequest) -> Cluster:
    """The cluster for the e2e chart tests: $SIPFLEET_E2E_KUBECONFIG's, else the local one."""
    kubeconfig = os.environ.get(EXTERNAL_KUBECONFIG)
    if not kubeconfig:
        local: Cluster = request.getfixturevalue("cluster")
        return local
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(f"{EXTERNAL_KUBECONFIG} is set but kubectl is not on PATH", pytrace=False)
    return Cluster(
        kubeconfig=Path(kubeconfig),
        state_dir=Path(kubeconfig).parent,
        bin_dir=Path(kubectl).parent,
        kubectl_path=Path(kubectl),
        helm_path=helm(),
    )


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


def mermaid_dir() -> Path:
    """A directory whose node_modules holds mermaid and jsdom (docs/check_mermaid.mjs)."""
    return _newest("tools-mermaid-*/.complete").parent


def prometheus_operator_crds() -> list[Path]:
    """The ServiceMonitor, PodMonitor and PrometheusRule CRDs of the Prometheus Operator."""
    return sorted(_newest("prometheus-operator-crds-*").glob("*.yaml"))


def _strict(node: object) -> None:
    """Close every object schema that lists its properties (kubeconform -strict)."""
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)


def write_kubeconform_schemas(
    get_raw: Callable[[str], str], docs: list[Manifest], out_dir: Path
) -> str:
    """Standalone, strict JSON schemas for the kinds in ``docs``, from a live API server.

    ``get_raw(path)`` returns the body of ``kubectl get --raw path``. The
    server's OpenAPI v3 document of each group-version holds the built-in
    kinds and the installed CRDs alike. Returns kubeconform's
    ``-schema-location`` template for ``out_dir``.
    """
    wanted: dict[str, set[str]] = {}
    for doc in docs:
        wanted.setdefault(doc["apiVersion"], set()).add(doc["kind"])
    paths = {v: (f"apis/{v}" if "/" in v else f"api/{v}") for v in wanted}
    # The server publishes a new CRD's OpenAPI a few seconds after it is Established.
    deadline = time.monotonic() + 60
    while True:
        index = json.loads(get_raw("/openapi/v3"))["paths"]
        missing = sorted(v for v, p in paths.items() if p not in index)
        if not missing:
            break
        assert time.monotonic() < deadline, f"the API server does not publish {missing}"
        time.sleep(1)
    for api_version, kinds in wanted.items():
        group, _, version = api_version.rpartition("/")
        path = paths[api_version]
        schemas = json.loads(get_raw(index[path]["serverRelativeURL"]))["components"]["schemas"]
        _strict(schemas)
        for name, schema in schemas.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                if gvk["group"] == group and gvk["version"] == version and gvk["kind"] in kinds:
                    target = out_dir / (group or version) / version / f"{gvk['kind'].lower()}.json"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    standalone = {
                        "$ref": f"#/components/schemas/{name}",
                        "components": {"schemas": schemas},
                    }
                    target.write_text(json.dumps(standalone))
    return str(out_dir) + "/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json"


def apply_crds(kubectl: Callable[..., subprocess.CompletedProcess[str]], paths: list[Path]) -> None:
    """Server-side apply CRD files (some are too big for client-side apply) and await them."""
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=sipfleet-chart-tests"]
    for path in paths:
        args += ["-f", str(path)]
    kubectl(*args, timeout=120)
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in paths]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
