"""The local cluster itself (`sipfleet dev up`): the real API server, RBAC,
Deployments, volumes and restarts, pod deletion, a busy port, and a real node
left behind by a killed run taken down by the next `up`.

Pods run the project's node image (the only image the node has: nothing is
ever pulled), each test in a namespace of its own on the shared cluster.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_support import find_json, get_json, wait_for
from sipfleet.devcluster import hostnet, procs
from sipfleet.devcluster.binaries import KUBE_VERSION
from sipfleet.devcluster.cluster import Cluster
from sipfleet.devcluster.controlplane import COMPONENTS, ControlPlane

IMAGE = "sipfleet/node:0.1.0"


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = f"dc-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


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


def test_crd_is_served_and_validates(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.e2e.sipfleet.io", "--timeout=30s"
    )
    good = "apiVersion: e2e.sipfleet.io/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n"
    # Discovery of a new group can lag a moment behind Established.
    wait_for(
        "the Widget to be created",
        lambda: (
            cluster.kubectl("-n", ns, "apply", "-f", "-", input=good, check=False).returncode == 0
        ),
    )
    assert find_json(cluster, "-n", ns, "widget", "w1")["spec"] == {"size": 3}
    bad = good.replace("w1", "w2").replace("size: 3", "size: 0")
    rejected = cluster.kubectl("-n", ns, "apply", "-f", "-", input=bad, check=False)
    assert rejected.returncode != 0
    assert "spec.size" in rejected.stderr


WEB = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: {IMAGE}
        command: [python3, -m, http.server, "8000", --bind, $(POD_IP)]
        env:
        - name: POD_IP
          valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
        readinessProbe:
          httpGet: {{path: /, port: 8000}}
          periodSeconds: 1
"""


def _pods(cluster: Cluster, ns: str, app: str) -> list[dict[str, Any]]:
    listing = find_json(cluster, "-n", ns, "pods", "-l", f"app={app}")
    return list(listing["items"]) if listing else []


def _ready_pod(cluster: Cluster, ns: str, app: str) -> dict[str, Any] | None:
    for pod in _pods(cluster, ns, app):
        conditions = pod.get("status", {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return pod
    return None


def test_deployment_runs_ready_and_is_garbage_collected(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=WEB)
    pod = wait_for("a Ready web pod", lambda: _ready_pod(cluster, ns, "web"))
    ip = pod["status"]["podIP"]
    assert ip.startswith(hostnet.POD_CIDR.rsplit(".", 1)[0] + "."), ip
    assert pod["spec"]["nodeName"] == "sipfleet-local"
    with urllib.request.urlopen(f"http://{ip}:8000/", timeout=5) as resp:
        assert resp.status == 200
    # kubectl logs goes API server -> kubelet -> the container's log.
    logs = cluster.kubectl("-n", ns, "logs", pod["metadata"]["name"], "--tail=1").stdout
    assert '"GET / HTTP/1.1" 200' in logs

    cluster.kubectl("-n", ns, "delete", "deployment", "web", "--wait=true", "--timeout=30s")
    wait_for(
        "the ReplicaSet to be collected",
        lambda: not find_json(cluster, "-n", ns, "rs", "-l", "app=web")["items"],
    )
    wait_for("the Pod to be collected", lambda: not _pods(cluster, ns, "web"))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{ip}:8000/", timeout=2)


# In-cluster access as client-go does it: the mounted ServiceAccount token
# and CA, the `kubernetes` Service.
LIST_PODS = """
import ssl, sys, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
ns = open(f"{sa}/namespace").read()
request = urllib.request.Request(f"https://kubernetes.default.svc/api/v1/namespaces/{ns}/pods",
                                 headers={"Authorization": f"Bearer {token}"})
try:
    urllib.request.urlopen(request, context=ssl.create_default_context(cafile=f"{sa}/ca.crt"))
    print("allowed")
except urllib.error.HTTPError as err:
    print("denied", err.code)
    sys.exit(1)
"""


def _job_pod(name: str, account: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "serviceAccountName": account,
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": IMAGE, "command": ["python3", "-c", LIST_PODS]}
                ],
            },
        }
    )


def _finished(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    pod = find_json(cluster, "-n", ns, "pod", name)
    if pod and pod["status"].get("phase") in ("Succeeded", "Failed"):
        return dict(pod)
    return None


def test_rbac_is_enforced_for_pod_service_accounts(cluster: Cluster, ns: str) -> None:
    """A pod's mounted ServiceAccount token: no Role, 403; with one, allowed."""
    cluster.kubectl("-n", ns, "create", "serviceaccount", "nobody")
    cluster.kubectl("-n", ns, "create", "serviceaccount", "reader")
    cluster.kubectl("-n", ns, "create", "role", "pod-reader", "--verb=list", "--resource=pods")
    cluster.kubectl(
        "-n", ns, "create", "rolebinding", "reader", "--role=pod-reader",
        f"--serviceaccount={ns}:reader",
    )  # fmt: skip
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=_job_pod("denied", "nobody"))
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=_job_pod("allowed", "reader"))

    denied = wait_for("the denied pod to finish", lambda: _finished(cluster, ns, "denied"))
    allowed = wait_for("the allowed pod to finish", lambda: _finished(cluster, ns, "allowed"))
    assert denied["status"]["phase"] == "Failed"
    assert cluster.kubectl("-n", ns, "logs", "denied").stdout.split() == ["denied", "403"]
    assert allowed["status"]["phase"] == "Succeeded"
    assert cluster.kubectl("-n", ns, "logs", "allowed").stdout.split() == ["allowed"]


def test_token_of_an_account_without_rights_gets_403(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "create", "serviceaccount", "stranger")
    token = cluster.kubectl("-n", ns, "create", "token", "stranger").stdout.strip()
    config = json.loads(cluster.kubectl("config", "view", "--raw", "-o", "json").stdout)
    server = config["clusters"][0]["cluster"]["server"]
    ctx = ssl.create_default_context(cafile=str(cluster.state_dir / "pki" / "ca.crt"))
    request = urllib.request.Request(
        f"{server}/api/v1/namespaces/{ns}/secrets", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, context=ctx, timeout=5)
    assert err.value.code == 403


VOLUME_POD = f"""
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{token: s3cret}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{greeting: hello}}
---
apiVersion: v1
kind: Pod
metadata: {{name: volumes}}
spec:
  restartPolicy: OnFailure
  volumes:
  - {{name: creds, secret: {{secretName: creds}}}}
  - {{name: scratch, emptyDir: {{}}}}
  initContainers:
  - name: prepare
    image: {IMAGE}
    command: [python3, -c, "import sys; open(sys.argv[1], 'w').write('from-init')", /scratch/init]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  containers:
  - name: main
    image: {IMAGE}
    command: [python3, -c]
    args:
    - |
      import os, pathlib, sys
      scratch = pathlib.Path(os.environ["SCRATCH"])
      runs = scratch / "runs"
      runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
      print((scratch / "init").read_text())
      print(open(sys.argv[1]).read(), os.environ["GREETING"])
      sys.exit(3 if len(runs.read_text()) < 2 else 0)
    - /etc/creds/token
    env:
    - {{name: SCRATCH, value: /scratch}}
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}
    volumeMounts:
    - {{name: creds, mountPath: /etc/creds}}
    - {{name: scratch, mountPath: /scratch}}
"""


def test_volumes_env_and_restart_on_failure(cluster: Cluster, ns: str) -> None:
    """Secret and emptyDir volumes, an env value from a ConfigMap, an init
    container first; a failing container is restarted (OnFailure), its exit
    code recorded, and the emptyDir outlives the restart."""
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=VOLUME_POD)
    pod = wait_for("the volumes pod to finish", lambda: _finished(cluster, ns, "volumes"))
    status = pod["status"]["containerStatuses"][0]
    assert pod["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["state"]["terminated"]["exitCode"] == 0
    assert cluster.kubectl("-n", ns, "logs", "volumes").stdout.split() == [
        "from-init",
        "s3cret",
        "hello",
    ]
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0


def _dev_up(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipfleet.devcluster.cli", "dev", "up",
         f"--state-dir={state_dir}", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_busy_api_port_is_a_one_line_error(short_tmp: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _dev_up(short_tmp, f"--api-port={port}")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"port {port} on 127.0.0.1 is busy" in result.stderr
    assert not (short_tmp / "run").exists()  # nothing was started


def test_a_state_dir_too_long_for_unix_sockets_is_a_one_line_error(short_tmp: Path) -> None:
    state_dir = short_tmp / ("d" * 70)
    result = _dev_up(state_dir)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"--state-dir {state_dir} is too long for the kubelet's unix sockets" in result.stderr
    assert not state_dir.exists()  # nothing was started


STUBBORN_POD = f"""
apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    command:
    - python3
    - -c
    - |
      import signal, time
      signal.signal(signal.SIGTERM, signal.SIG_IGN)
      print("ready", flush=True)
      time.sleep(600)
"""


def test_deletion_escalates_to_sigkill_after_the_grace_period(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=STUBBORN_POD)
    wait_for(
        "the stubborn pod to run",
        lambda: "ready" in cluster.kubectl("-n", ns, "logs", "stubborn", check=False).stdout,
    )
    began = time.monotonic()
    cluster.kubectl("-n", ns, "delete", "pod", "stubborn", "--wait=false")
    time.sleep(1.0)
    running = get_json(cluster, "-n", ns, "pod", "stubborn")["status"]["containerStatuses"][0]
    assert "running" in running["state"], "SIGTERM is ignored: still running within grace"
    wait_for(
        "the pod object to go",
        lambda: find_json(cluster, "-n", ns, "pod", "stubborn") is None or None,
    )
    assert 1.5 < time.monotonic() - began < 15


def test_leftover_processes_are_detected(tmp_path: Path) -> None:
    """The fixture's final check (no process left in the state dir) can fail."""
    sleeper = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    try:
        assert sleeper.pid in procs.processes_under(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.pid not in procs.processes_under(tmp_path)


# A run that brings a cluster up, holding it, and is then killed (as when a
# pytest session or the demo is SIGKILLed): nothing of it runs `down`.
KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from sipfleet.devcluster.controlplane import ControlPlane
ControlPlane(Path(sys.argv[1]), out=lambda line: None).up(hold=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.own_cluster
@pytest.mark.timeout(400)
def test_a_killed_runs_node_is_taken_down_by_the_next_up(
    realnode_lock: None, short_tmp: Path
) -> None:
    abandoned, fresh = short_tmp / "killed", short_tmp / "next"
    run = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(abandoned)], timeout=300, check=False
    )
    assert run.returncode == -signal.SIGKILL
    left = ControlPlane(abandoned, out=lambda line: None)
    assert all(left.running().values()), "the killed run's cluster should still run"
    assert hostnet.link_exists(hostnet.POD_BRIDGE)

    said: list[str] = []
    plane = ControlPlane(fresh, out=said.append)
    try:
        plane.up(timeout=120.0, hold=True)
        assert f"taking down the real node of {abandoned}" in said[0], said
        assert not any(left.running().values())
        assert not procs.processes_under(abandoned)
        assert plane.node_ready() and plane.dns_ready()
    finally:
        plane.down()
    # The abandoned cluster's `down` (the first) stopped every component.
    first = next(line for line in said if line.startswith("stopped: "))
    assert set(COMPONENTS) <= set(first.removeprefix("stopped: ").split(", ")), first
    for state_dir in (abandoned, fresh):
        assert not procs.processes_under(state_dir), state_dir
        ControlPlane(state_dir, out=lambda line: None).discard_images()
    for bridge in (hostnet.NODE_BRIDGE, hostnet.POD_BRIDGE):
        assert not hostnet.link_exists(bridge), bridge
    assert not hostnet.OWNER.exists()
