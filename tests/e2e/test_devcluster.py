"""Smoke tests of the local control plane and the process kubelet against the real API server."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kube_support import find_json, wait_for
from sipfleet.devcluster import procs
from sipfleet.devcluster.binaries import KUBE_VERSION
from sipfleet.devcluster.cluster import Cluster


@pytest.fixture
def cluster(process_cluster: Cluster) -> Cluster:
    """These tests are about the process kubelet itself (the real node: test_realnode.py)."""
    return process_cluster


def pods_of(cluster: Cluster, app: str) -> list[dict[str, Any]]:
    listing = find_json(cluster, "pods", "-l", f"app={app}")
    return list(listing["items"]) if listing else []


def container_log(cluster: Cluster, pod: dict[str, Any], container: str) -> str:
    meta = pod["metadata"]
    folder = f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
    path = cluster.state_dir / "pods" / folder / f"{container}.log"
    return path.read_text() if path.exists() else ""


def pid_of(pod: dict[str, Any]) -> int:
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    assert container_id.startswith("sipfleet://")
    return int(container_id.removeprefix("sipfleet://"))


def test_kubectl_reports_the_real_server_version(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == KUBE_VERSION


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.e2e.sipfleet.io}
spec:
  group: e2e.sipfleet.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
"""


def test_crd_is_served_and_validates(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.e2e.sipfleet.io", "--timeout=30s"
    )
    good = "apiVersion: e2e.sipfleet.io/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n"
    # Discovery of a new group can lag a moment behind Established.
    wait_for(
        "the Widget to be created",
        lambda: cluster.kubectl("apply", "-f", "-", input=good, check=False).returncode == 0,
    )
    assert find_json(cluster, "widget", "w1")["spec"] == {"size": 3}
    bad = good.replace("w1", "w2").replace("size: 3", "size: 0")
    rejected = cluster.kubectl("apply", "-f", "-", input=bad, check=False)
    assert rejected.returncode != 0
    assert "spec.size" in rejected.stderr


def web_deployment(name: str) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: python:3
        command: [python, -m, http.server, "8000", --bind, $(POD_IP)]
        env:
        - name: POD_IP
          valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
        readinessProbe:
          httpGet: {{path: /, port: 8000}}
          periodSeconds: 1
"""


def _ready_pod(cluster: Cluster, app: str) -> dict[str, Any] | None:
    for pod in pods_of(cluster, app):
        conditions = pod.get("status", {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return pod
    return None


def test_deployment_runs_ready_and_is_garbage_collected(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=web_deployment("web"))
    pod = wait_for("a Ready web pod", lambda: _ready_pod(cluster, "web"))
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.0.0.") and int(ip.rsplit(".", 1)[1]) >= 10
    assert pod["spec"]["nodeName"] == "sipfleet-local"
    with urllib.request.urlopen(f"http://{ip}:8000/", timeout=5) as resp:
        assert resp.status == 200
    pid = pid_of(pod)
    assert Path(f"/proc/{pid}").exists()
    # kubectl logs goes API server -> kubelet endpoint -> the container's log file.
    logs = cluster.kubectl("logs", pod["metadata"]["name"], "--tail=1").stdout
    assert '"GET / HTTP/1.1" 200' in logs

    cluster.kubectl("delete", "deployment", "web", "--wait=true", "--timeout=30s")
    wait_for(
        "the ReplicaSet to be collected",
        lambda: not find_json(cluster, "rs", "-l", "app=web")["items"],
    )
    wait_for("the Pod to be collected", lambda: not pods_of(cluster, "web"))
    wait_for("the process to exit", lambda: not Path(f"/proc/{pid}/cmdline").exists() or None)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{ip}:8000/", timeout=2)


def job_pod(name: str, account: str, argv: list[str]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "serviceAccountName": account,
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "kubectl", "command": argv}],
            },
        }
    )


def _finished(cluster: Cluster, name: str) -> dict[str, Any] | None:
    pod = find_json(cluster, "pod", name)
    if pod and pod["status"].get("phase") in ("Succeeded", "Failed"):
        return dict(pod)
    return None


def test_rbac_is_enforced_for_pod_service_accounts(cluster: Cluster) -> None:
    """A pod's KUBECONFIG carries its ServiceAccount token: no Role, no access."""
    cluster.kubectl("create", "serviceaccount", "nobody")
    cluster.kubectl("create", "serviceaccount", "reader")
    cluster.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods")
    cluster.kubectl(
        "create", "rolebinding", "reader", "--role=pod-reader", "--serviceaccount=default:reader"
    )
    argv = [str(cluster.kubectl_path), "get", "pods", "-o", "name"]
    cluster.kubectl("apply", "-f", "-", input=job_pod("denied", "nobody", argv))
    cluster.kubectl("apply", "-f", "-", input=job_pod("allowed", "reader", argv))

    denied = wait_for("the denied pod to finish", lambda: _finished(cluster, "denied"))
    allowed = wait_for("the allowed pod to finish", lambda: _finished(cluster, "allowed"))
    assert denied["status"]["phase"] == "Failed"
    assert denied["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    log = container_log(cluster, denied, "main")
    assert "Forbidden" in log or "forbidden" in log
    assert 'User "system:serviceaccount:default:nobody" cannot list resource "pods"' in log
    assert allowed["status"]["phase"] == "Succeeded"
    assert "pod/allowed" in container_log(cluster, allowed, "main")


def test_token_of_an_account_without_rights_gets_403(cluster: Cluster) -> None:
    cluster.kubectl("create", "serviceaccount", "stranger")
    token = cluster.kubectl("create", "token", "stranger").stdout.strip()
    config = json.loads(cluster.kubectl("config", "view", "--raw", "-o", "json").stdout)
    server = config["clusters"][0]["cluster"]["server"]
    ctx = ssl.create_default_context(cafile=str(cluster.state_dir / "pki" / "ca.crt"))
    request = urllib.request.Request(
        f"{server}/api/v1/namespaces/default/secrets", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, context=ctx, timeout=5)
    assert err.value.code == 403


VOLUME_POD = """
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cret}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: volumes}
spec:
  restartPolicy: OnFailure
  volumes:
  - {name: creds, secret: {secretName: creds}}
  - {name: scratch, emptyDir: {}}
  initContainers:
  - name: prepare
    image: python:3
    command: [python, -c, "import sys; open(sys.argv[1], 'w').write('from-init')", /scratch/init]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  containers:
  - name: main
    image: python:3
    command: [python, -c]
    args:
    - |
      import os, pathlib, sys
      scratch = pathlib.Path(os.environ["SCRATCH"])
      runs = scratch / "runs"
      runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
      print((scratch / "init").read_text())
      print(open(sys.argv[1]).read(), os.environ["GREETING"], os.environ["KUBECONFIG"])
      sys.exit(3 if len(runs.read_text()) < 2 else 0)
    - /etc/creds/token
    env:
    - {name: SCRATCH, value: /scratch}
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    volumeMounts:
    - {name: creds, mountPath: /etc/creds}
    - {name: scratch, mountPath: /scratch}
"""


def test_volumes_env_and_restart_on_failure(cluster: Cluster) -> None:
    """Secret and emptyDir volumes land on the host with paths rewritten; an
    init container runs first; a failing container is restarted (OnFailure)
    and its exit code recorded."""
    cluster.kubectl("apply", "-f", "-", input=VOLUME_POD)
    pod = wait_for("the volumes pod to finish", lambda: _finished(cluster, "volumes"))
    status = pod["status"]["containerStatuses"][0]
    assert pod["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["state"]["terminated"]["exitCode"] == 0
    log = container_log(cluster, pod, "main")
    assert "from-init" in log
    assert "s3cret hello" in log
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0
    kubeconfig = log.split()[-1]
    assert os.path.isfile(kubeconfig)


def test_busy_api_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "sipfleet.devcluster.cli", "dev", "up",
             f"--state-dir={tmp_path}", f"--api-port={port}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"port {port} on 127.0.0.1 is busy" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing was started


LIVENESS_POD = """
apiVersion: v1
kind: Pod
metadata: {name: liveness}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: main
    image: python:3
    command: [python, -c, "import time; time.sleep(600)"]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
    livenessProbe:
      exec: {command: [test, -f, /scratch/alive]}
      periodSeconds: 1
      failureThreshold: 1
"""


def test_failing_liveness_probe_restarts_the_container(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=LIVENESS_POD)

    def restarted() -> dict[str, Any] | None:
        pod = find_json(cluster, "pod", "liveness")
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

    status = wait_for("a liveness restart", restarted)
    last = status["lastState"]["terminated"]
    assert last["exitCode"] == 143  # SIGTERM
    assert "liveness probe failed" in last["message"]
    events = find_json(cluster, "events", "--field-selector=involvedObject.name=liveness")
    reasons = {e["reason"] for e in events["items"]}
    assert {"Scheduled", "Started", "Unhealthy", "Killing"} <= reasons
    cluster.kubectl("delete", "pod", "liveness", "--timeout=30s")


STUBBORN_POD = """
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: python:3
    command:
    - python
    - -c
    - |
      import signal, time
      signal.signal(signal.SIGTERM, signal.SIG_IGN)
      print("ready", flush=True)
      time.sleep(600)
"""


def test_deletion_escalates_to_sigkill_after_the_grace_period(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=STUBBORN_POD)
    pod = wait_for(
        "the stubborn pod to run",
        lambda: (
            (p := find_json(cluster, "pod", "stubborn"))
            and "ready" in container_log(cluster, p, "main")
            and p
        ),
    )
    pid = pid_of(find_json(cluster, "pod", "stubborn"))
    began = time.monotonic()
    cluster.kubectl("delete", "pod", "stubborn", "--wait=false")
    time.sleep(1.0)
    assert Path(f"/proc/{pid}/cmdline").exists(), "SIGTERM is ignored: still alive within grace"
    wait_for("the pod object to go", lambda: find_json(cluster, "pod", "stubborn") is None or None)
    wait_for("the process to be killed", lambda: not Path(f"/proc/{pid}/cmdline").exists() or None)
    assert 1.5 < time.monotonic() - began < 15
    assert pod["status"]["podIP"].startswith("127.0.0.")


def test_leftover_processes_are_detected(tmp_path: Path) -> None:
    """The fixture's final check (no process left in the state dir) can fail."""
    sleeper = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    try:
        assert sleeper.pid in procs.processes_under(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.pid not in procs.processes_under(tmp_path)
