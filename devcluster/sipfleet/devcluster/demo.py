"""`sipfleet demo`: a short, bounded tour of the local cluster.

Brings the control plane up (unless it already runs), shows the node, runs a
sample Deployment (`python -m http.server` on its Pod IP) until it is Ready,
fetches a page from the Pod's 127.0.0.x address, deletes the sample and, if
the demo started the cluster, brings it down again.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

from sipfleet.devcluster import binaries
from sipfleet.devcluster.cluster import Cluster
from sipfleet.devcluster.controlplane import ControlPlane, DevClusterError

SAMPLE = "sipfleet-demo-web"
SAMPLE_MANIFEST = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {SAMPLE}, namespace: default}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {SAMPLE}}}}}
  template:
    metadata: {{labels: {{app: {SAMPLE}}}}}
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


def _remaining(deadline: float) -> str:
    return f"{max(1, int(deadline - time.monotonic()))}s"


def _show_sample(cluster: Cluster, deadline: float) -> None:
    cluster.kubectl("apply", "-f", "-", input=SAMPLE_MANIFEST)
    cluster.kubectl(
        "wait", "--for=condition=Available", f"deployment/{SAMPLE}",
        f"--timeout={_remaining(deadline)}",
    )  # fmt: skip
    pods = json.loads(cluster.kubectl("get", "pods", "-l", f"app={SAMPLE}", "-o", "json").stdout)
    pod = pods["items"][0]
    ip = pod["status"]["podIP"]
    print(f"pod {pod['metadata']['name']}: {pod['status']['phase']}, Ready, IP {ip}")
    with urllib.request.urlopen(f"http://{ip}:8000/", timeout=5) as resp:
        print(f"GET http://{ip}:8000/ -> {resp.status} ({len(resp.read())} bytes)")
    print(cluster.kubectl("get", "pods", "-o", "wide").stdout.rstrip())


def run_demo(state_dir: Path, *, timeout: float = 120.0) -> int:
    """Run the demo; 0 if every step worked."""
    deadline = time.monotonic() + timeout
    plane = ControlPlane(state_dir)
    was_running = all(plane.running().values())
    plane.up()
    cluster = Cluster.of(plane, binaries.locate(build_if_missing=False))
    try:
        print(cluster.kubectl("version").stdout.rstrip())
        print(cluster.kubectl("get", "nodes", "-o", "wide").stdout.rstrip())
        _show_sample(cluster, deadline)
        cluster.kubectl(
            "delete", "deployment", SAMPLE, "--wait=true", f"--timeout={_remaining(deadline)}"
        )
        print(f"deleted deployment {SAMPLE}")
        return 0
    except subprocess.CalledProcessError as err:
        raise DevClusterError(
            f"demo step failed: {' '.join(err.cmd[2:])}: {err.stderr.strip()}"
        ) from err
    except subprocess.TimeoutExpired as err:
        raise DevClusterError(f"demo step timed out: {err.cmd}") from err
    finally:
        if not was_running:
            plane.down()
