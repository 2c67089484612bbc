"""Cluster-side steps of the demo: CRDs, the operator from its image, cleanup.

The demo and the e2e tests (tests/e2e/operator_harness.py) install the
operator as a user does: `ChartOperator` runs ``helm`` with the project's
chart (charts/sipfleet), so the operator is a Deployment running the
``sipfleet/operator`` image (built and imported into the node by
``sipfleet dev up``) under its own ServiceAccount and the chart's
least-privilege ClusterRole, reaching the API server through the
``kubernetes`` Service from the Pod network.

`install` and `service_account_kubeconfig` (the operator's RBAC of
operator/deploy/rbac.yaml and a ServiceAccount-token kubeconfig) serve tools
that run the operator as a host process (bench/operator_reaction.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sipfleet.demo import manifests
from sipfleet.devcluster.cluster import Cluster
from sipfleet.operator import crdgen

REPO = Path(__file__).resolve().parents[3]
RBAC = REPO / "operator" / "deploy" / "rbac.yaml"
CHART = REPO / "charts" / "sipfleet"
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


def install_crds(cluster: Cluster, *, namespaces: tuple[str, ...] = ()) -> None:
    """The CRDs (generated from the operator's models, so always the current ones;
    ``helm install`` leaves CRDs that exist alone) and ``namespaces``."""
    crds = "---\n".join(crdgen.rendered().values())
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", "-", input=crds)
    for crd in CRDS:
        kubectl(cluster, "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
    for namespace in namespaces:
        kubectl(cluster, "apply", "-f", "-", input=_namespace(namespace))


def install(cluster: Cluster, *, namespaces: tuple[str, ...] = (manifests.NAMESPACE,)) -> None:
    """CRDs, ``namespaces`` and the RBAC of a host-process operator (operator/deploy/rbac.yaml:
    ServiceAccount ``sipfleet-operator`` in ``sipfleet-system``)."""
    if not RBAC.is_file():
        raise DemoError(f"{RBAC} is missing: run from a sipfleet source checkout")
    install_crds(cluster, namespaces=(SA_NAMESPACE, *namespaces))
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


ALIVE_CHECK_S = 2.0
"""`ChartOperator.alive` asks the API server at most this often (seconds)."""


@dataclass
class ChartOperator:
    """The operator installed by ``helm`` from charts/sipfleet: one replica of the
    ``sipfleet/operator`` image watching ``namespace`` (the release's own), started
    with ``sipfleet-operator`` options ``args`` (the chart's ``operator.extraArgs``).

    Every method raises DemoError naming the helm or kubectl command that failed.
    """

    cluster: Cluster
    release: str
    """Helm release name; unique on the cluster (it names the ClusterRole)."""
    namespace: str
    log: Path
    """`save_log` appends the operator Pods' logs here (`stop` does it first)."""
    args: tuple[str, ...] = ()
    interval: int = 2
    """Seconds between control-loop passes (``operator.interval``)."""
    _alive: tuple[float, bool] = field(default=(float("-inf"), False), repr=False)

    @property
    def selector(self) -> str:
        """The label selector of the release's operator Pods and Deployment."""
        return f"app.kubernetes.io/component=operator,app.kubernetes.io/instance={self.release}"

    def values(self) -> dict[str, Any]:
        """The chart values of this install (written next to the log)."""
        return {
            "operator": {
                "replicas": 1,
                # Standalone: a restarted operator acts at once (no Lease to wait for).
                "leaderElection": False,
                "watchNamespaces": [self.namespace],
                "interval": self.interval,
                "extraArgs": list(self.args),
            },
            # Ready (and `helm --wait` done) within a second of the health endpoint answering.
            "readinessProbe": {"periodSeconds": 1},
        }

    def helm(self, *args: str, timeout: float = 180.0) -> str:
        """Run the cluster's helm on this release's namespace; its stdout."""
        argv = [str(self.cluster.helm_path), "--kubeconfig", str(self.cluster.kubeconfig)]
        argv += [*args, "--namespace", self.namespace]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise DemoError(f"helm {' '.join(args)}: no answer within {timeout:g}s") from err
        if done.returncode != 0:
            raise DemoError(f"helm {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def deployment(self) -> str | None:
        """``deployment.apps/<name>`` of the release, None when it is not installed."""
        names = kubectl(
            self.cluster, "get", "deployment", "-n", self.namespace, "-l", self.selector,
            "-o", "name",
        ).split()  # fmt: skip
        return names[0] if names else None

    def start(self, timeout: float = 120.0) -> ChartOperator:
        """Install the release (or scale it back to one replica) and wait until its Pod
        is Ready (the operator's /healthz answers)."""
        if not CHART.is_dir():
            raise DemoError(f"{CHART} is missing: run from a sipfleet source checkout")
        deployment = self.deployment()
        if deployment is None:
            values = self.log.with_name(f"{self.release}-values.yaml")
            values.write_text(yaml.safe_dump(self.values()))
            self.helm(
                "install", self.release, str(CHART), "--values", str(values),
                "--wait", f"--timeout={int(timeout)}s", timeout=timeout + 30,
            )  # fmt: skip
        else:
            kubectl(self.cluster, "scale", deployment, "-n", self.namespace, "--replicas=1")
            kubectl(
                self.cluster, "rollout", "status", deployment, "-n", self.namespace,
                f"--timeout={int(timeout)}s", timeout=timeout + 10,
            )  # fmt: skip
        self._alive = (float("-inf"), False)
        return self

    def scale_to_zero(self) -> None:
        """Ask for no replica (the Pod gets SIGTERM and its grace period)."""
        deployment = self.deployment()
        if deployment is not None:
            kubectl(self.cluster, "scale", deployment, "-n", self.namespace, "--replicas=0")

    def pods(self) -> list[dict[str, Any]]:
        """The release's operator Pods that are not terminating."""
        listed = kubectl(
            self.cluster, "get", "pods", "-n", self.namespace, "-l", self.selector, "-o", "json"
        )
        return [
            p for p in json.loads(listed)["items"] if not p["metadata"].get("deletionTimestamp")
        ]

    def running(self) -> bool:
        """An operator container runs now."""
        return any(
            "running" in (s.get("state") or {})
            for p in self.pods()
            for s in (p.get("status") or {}).get("containerStatuses", [])
        )

    def alive(self) -> bool:
        """`running`, asked at most every ALIVE_CHECK_S (the demo polls it often)."""
        checked, answer = self._alive
        if time.monotonic() - checked >= ALIVE_CHECK_S:
            answer = self.running()
            self._alive = (time.monotonic(), answer)
        return answer

    def logs(self) -> str:
        """The logs of the release's operator Pods (each line prefixed with its Pod)."""
        return kubectl(
            self.cluster, "logs", "-n", self.namespace, "-l", self.selector, "--tail=-1",
            "--prefix", "--all-containers", "--ignore-errors",
        )  # fmt: skip

    def save_log(self, why: str) -> None:
        """Append `logs` to `log` under a line naming ``why``; a failure is noted there."""
        try:
            text = self.logs()
        except DemoError as err:
            text = f"(no logs: {err})\n"
        with self.log.open("a") as out:
            out.write(f"--- {self.release}: operator logs at {why} ---\n{text}")

    def stop(self, timeout: float = 60.0) -> None:
        """Keep the logs, then ``helm uninstall`` (the operator gets SIGTERM: a clean
        shutdown); nothing happens when the release is not installed."""
        if self.deployment() is None:
            return
        self.save_log("stop")
        self.helm(
            "uninstall", self.release, "--ignore-not-found", "--wait",
            f"--timeout={int(timeout)}s", timeout=timeout + 30,
        )  # fmt: skip
        self._alive = (float("-inf"), False)


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
