"""Cluster-side steps of the demo: CRDs, the operator's RBAC and process, cleanup.

The operator runs as a local process (as the e2e tests run it) with a
kubeconfig holding its ServiceAccount's token, bound to the ClusterRole of
operator/deploy/rbac.yaml: the demo exercises the same RBAC as a real install.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sipfleet.demo import manifests
from sipfleet.devcluster.cluster import Cluster
from sipfleet.operator import crdgen

REPO = Path(__file__).resolve().parents[3]
RBAC = REPO / "operator" / "deploy" / "rbac.yaml"
SA_NAMESPACE = "sipfleet-system"
SA_NAME = "sipfleet-operator"
OPERATOR_BIN = Path(sys.executable).parent / "sipfleet-operator"
CRDS = ("sipfleets.sipfleet.io", "sipconferences.sipfleet.io")


class DemoError(RuntimeError):
    """A demo step failed; the message says which and why."""


def kubectl(cluster: Cluster, *args: str, input: str | None = None, timeout: float = 60.0) -> str:
    """Run kubectl; a failure becomes a DemoError naming the command and its stderr."""
    try:
        return cluster.kubectl(*args, input=input, timeout=timeout).stdout
    except subprocess.CalledProcessError as err:
        raise DemoError(f"kubectl {' '.join(args)}: {err.stderr.strip()}") from err
    except subprocess.TimeoutExpired as err:
        raise DemoError(f"kubectl {' '.join(args)}: no answer within {timeout:g}s") from err


def install(cluster: Cluster, *, namespaces: tuple[str, ...] = (manifests.NAMESPACE,)) -> None:
    """CRDs (generated from the operator's models), the operator's RBAC, ``namespaces``."""
    if not RBAC.is_file():
        raise DemoError(f"{RBAC} is missing: run the demo from a sipfleet source checkout")
    crds = "---\n".join(crdgen.rendered().values())
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", "-", input=crds)
    for crd in CRDS:
        kubectl(cluster, "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
    for namespace in (SA_NAMESPACE, *namespaces):
        kubectl(cluster, "apply", "-f", "-", input=_namespace(namespace))
    kubectl(cluster, "apply", "-f", str(RBAC))


def _namespace(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def apply(cluster: Cluster, *objs: dict[str, Any]) -> None:
    kubectl(cluster, "apply", "-f", "-", input=yaml.safe_dump_all(objs))


def service_account_kubeconfig(cluster: Cluster, path: Path) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount only."""
    token = kubectl(
        cluster, "create", "token", SA_NAME, "-n", SA_NAMESPACE, "--duration=1h"
    ).strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": SA_NAME, "user": {"token": token}}],
        "contexts": [{"name": SA_NAME, "context": {"cluster": server["name"], "user": SA_NAME}}],
        "current-context": SA_NAME,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class OperatorProcess:
    """One ``sipfleet-operator`` process watching one namespace (the demo's by default)."""

    kubeconfig: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    namespace: str = manifests.NAMESPACE
    args: tuple[str, ...] = ("--interval", "1")

    def start(self) -> OperatorProcess:
        if not OPERATOR_BIN.exists():
            raise DemoError(f"{OPERATOR_BIN} is missing: install the project (make venv)")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(OPERATOR_BIN),
                    "--namespace",
                    self.namespace,
                    "--kubeconfig",
                    str(self.kubeconfig),
                    *self.args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: a terminal's Ctrl-C reaches only the demo, which then
                # deletes its objects while the operator still clears their finalizers.
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def remove_leftovers(cluster: Cluster, timeout: float = 60.0) -> bool:
    """Delete the demo namespace left by an interrupted run; True if there was one.

    No operator runs yet, so the finalizers it would clear are removed first.
    """
    found = cluster.kubectl("get", "namespace", manifests.NAMESPACE, check=False)
    if found.returncode != 0:
        return False
    for kind in ("sipconferences", "sipfleets"):
        names = cluster.kubectl(
            "get", kind, "-n", manifests.NAMESPACE, "-o", "name", check=False
        ).stdout.split()
        for name in names:
            cluster.kubectl(
                "patch", name, "-n", manifests.NAMESPACE, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
    kubectl(
        cluster, "delete", "namespace", manifests.NAMESPACE, "--wait=true",
        f"--timeout={int(timeout)}s", timeout=timeout + 10,
    )  # fmt: skip
    return True


def delete_demo_objects(cluster: Cluster, timeout: float = 60.0) -> None:
    """Delete the conference and fleet while the operator still runs (it clears its
    finalizers), then wait for the server Pods to be gone."""
    deadline = time.monotonic() + timeout
    for kind, name in (("sipconference", manifests.CONFERENCE), ("sipfleet", manifests.FLEET)):
        cluster.kubectl(
            "delete", kind, name, "-n", manifests.NAMESPACE, "--ignore-not-found",
            "--wait=true", f"--timeout={max(1, int(deadline - time.monotonic()))}s",
            check=False, timeout=timeout + 10,
        )  # fmt: skip
    selector = f"sipfleet.io/fleet={manifests.FLEET}"
    cluster.kubectl(
        "delete", "pods", "-n", manifests.NAMESPACE, "-l", selector, "--ignore-not-found",
        "--wait=true", f"--timeout={max(1, int(deadline - time.monotonic()))}s",
        check=False, timeout=timeout + 10,
    )  # fmt: skip
