"""The real node: restricted pods, enforced security contexts, kubectl logs/exec,
probes, and SIP over Services (pod-to-pod and host-to-pod, UDP and TCP).

Every pod runs the project's node image (built without Docker, imported into
containerd by `sipfleet dev up`); server pods use the exact
manifest the operator creates (sipfleet.operator.pods.server_pod).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_support import CHART, run_helm
from kube_support import get_json, wait_for
from sipfleet.devcluster import hostnet
from sipfleet.devcluster.cluster import Cluster, KubectlError
from sipfleet.operator import pods
from sipfleet.operator.models import SipFleetSpec

pytestmark = pytest.mark.e2e

NODE_IMAGE = "sipfleet/node:0.1.0"
SCENARIO = Path(__file__).parent / "scenarios" / "options.xml"
TOKEN = "e2e-admin-token"
# kube-proxy programs a new Service 0.2-0.8 s after its EndpointSlice appears.
SERVICE_RETRY_S = 3.0

# A SIP OPTIONS (RFC 3261 section 11) over UDP or TCP; prints the status line.
# The same source runs on the host and, through `kubectl exec`, in a pod. The
# Via asks for rport (RFC 3581): host -> Service traffic is masqueraded with a
# random source port (kube-proxy's `masquerade fully-random`), and without
# rport a UDP response goes to the Via's port (RFC 3261 18.2.2), not the source.
OPTIONS_CLIENT = r"""
import socket, sys, uuid
def options(host, port, transport, timeout=1.0):
    kind = socket.SOCK_DGRAM if transport == "UDP" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        me, my_port = s.getsockname()
        branch = "z9hG4bK" + uuid.uuid4().hex
        msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/{transport} {me}:{my_port};branch={branch};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag={uuid.uuid4().hex[:8]}\r\n"
               f"To: <sip:{host}:{port}>\r\nCall-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\n"
               "Content-Length: 0\r\n\r\n")
        s.send(msg.encode())
        return s.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
if __name__ == "__main__":
    print(options(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


def options_from_host(host: str, port: int, transport: str) -> str:
    scope: dict[str, Any] = {}
    exec(OPTIONS_CLIENT, scope)  # the same client code as in the pod
    status: str = scope["options"](host, port, transport)
    return status


def retry_status(probe: Any, what: str) -> str:
    """Call `probe` until it returns a status line (kube-proxy lag); fail after the retry window."""
    deadline = time.monotonic() + SERVICE_RETRY_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            status: str = probe()
            if status:
                return status
        except (OSError, subprocess.SubprocessError, KubectlError) as err:
            last = err
        time.sleep(0.2)
    pytest.fail(f"no SIP answer {what} within {SERVICE_RETRY_S}s: {last}")


@pytest.fixture
def ns(real_cluster: Cluster) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security Standard."""
    name = f"rn-{uuid.uuid4().hex[:8]}"
    real_cluster.kubectl("create", "namespace", name)
    real_cluster.kubectl(
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(kube: Cluster, obj: dict[str, Any]) -> None:
    kube.kubectl("apply", "-f", "-", input=json.dumps(obj))


def server_pod(ns: str, name: str) -> dict[str, Any]:
    """A main server pod exactly as the operator builds it (owner reference dropped)."""
    fleet = {
        "apiVersion": "sipfleet.io/v1alpha1",
        "kind": "SipFleet",
        "metadata": {"name": "e2e", "namespace": ns, "uid": "none"},
    }
    spec = SipFleetSpec.model_validate(
        {"mainServer": {"domain": "example.com"}, "nodeTemplate": {"image": NODE_IMAGE}}
    )
    body = pods.server_pod(fleet, name, "main", pods.server_pod_spec("e2e", spec, "main"))
    del body["metadata"]["ownerReferences"]
    body["metadata"]["labels"]["app"] = name
    return body


def start_server(kube: Cluster, ns: str, name: str = "sip") -> dict[str, Any]:
    kube.kubectl(
        "-n", ns, "create", "secret", "generic", "e2e-admin-token", f"--from-literal=token={TOKEN}"
    )
    apply(kube, server_pod(ns, name))
    return wait_ready(kube, ns, name)


def wait_ready(kube: Cluster, ns: str, name: str, timeout: float = 60.0) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod: dict[str, Any] = get_json(kube, "-n", ns, "pod", name)
        return pod if pods.pod_ready(pod) else None

    return wait_for(f"pod {ns}/{name} Ready", ready, timeout=timeout, step=0.2)


def test_restricted_namespace_rejects_a_privileged_pod(real_cluster: Cluster, ns: str) -> None:
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "priv", "namespace": ns},
        "spec": {
            "containers": [
                {"name": "c", "image": NODE_IMAGE, "securityContext": {"privileged": True}}
            ]
        },
    }
    result = real_cluster.kubectl("apply", "-f", "-", input=json.dumps(privileged), check=False)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr and "privileged" in result.stderr


def test_server_pod_runs_restricted_and_its_root_is_read_only(
    real_cluster: Cluster, ns: str
) -> None:
    pod = start_server(real_cluster, ns)
    assert pod["spec"]["nodeName"]
    script = (
        "import os\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines()"
        " if ':\\t' in l)\n"
        "print(os.getuid(), os.getgid(), status['CapEff'], status['NoNewPrivs'],"
        " status['Seccomp'])\n"
        "open('/tmp/ok', 'w').write('x')\n"
        "try:\n    open('/written', 'w')\nexcept OSError as e:\n    print('root:', e.strerror)\n"
    )
    out = real_cluster.kubectl("-n", ns, "exec", "sip", "--", "python3", "-c", script).stdout
    ids, root = out.strip().splitlines()
    assert ids.split() == ["10001", "10001", "0000000000000000", "1", "2"]
    assert root == "root: Read-only file system"
    logs = wait_for(
        "the server's log",
        lambda: real_cluster.kubectl("-n", ns, "logs", "sip").stdout,
        timeout=10,
    )
    assert pod["status"]["podIP"] in logs


def test_readiness_and_liveness_probes(real_cluster: Cluster, ns: str) -> None:
    real_cluster.kubectl(
        "-n", ns, "create", "secret", "generic", "e2e-admin-token", f"--from-literal=token={TOKEN}"
    )
    body = server_pod(ns, "sick")
    container = body["spec"]["containers"][0]
    # Ready is reported only once /readyz answers; a liveness probe on a
    # path that does not exist makes the kubelet restart the container.
    container["livenessProbe"] = {
        "httpGet": {"path": "/no-such-path", "port": pods.ADMIN_PORT},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    apply(real_cluster, body)
    wait_ready(real_cluster, ns, "sick")

    def restarted() -> int:
        pod = get_json(real_cluster, "-n", ns, "pod", "sick")
        statuses = pod["status"].get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    assert wait_for("a liveness restart", restarted, timeout=30) >= 1


def _plain_pod(kube: Cluster, ns: str, name: str, argv: list[str]) -> dict[str, Any]:
    """A pod with the server pod's restricted security context running `argv`, no probes."""
    kube.kubectl(
        "-n", ns, "create", "secret", "generic", "e2e-admin-token", f"--from-literal=token={TOKEN}"
    )
    body = server_pod(ns, name)
    (container,) = body["spec"]["containers"]
    container["command"] = argv
    del container["readinessProbe"], container["livenessProbe"]
    return body


def test_a_container_writing_to_its_root_filesystem_fails(real_cluster: Cluster, ns: str) -> None:
    body = _plain_pod(real_cluster, ns, "writer", ["python3", "-c", "open('/var/x', 'w')"])
    body["spec"]["restartPolicy"] = "Never"
    apply(real_cluster, body)

    def failed() -> dict[str, Any] | None:
        pod: dict[str, Any] = get_json(real_cluster, "-n", ns, "pod", "writer")
        return pod if pod["status"].get("phase") in ("Failed", "Succeeded") else None

    pod = wait_for("the writer to exit", failed, timeout=60)
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    log = real_cluster.kubectl("-n", ns, "logs", "writer").stdout
    assert "OSError: [Errno 30] Read-only file system: '/var/x'" in log, log


def _ready_addresses(kube: Cluster, ns: str, service: str) -> list[str]:
    slices = get_json(
        kube, "-n", ns, "endpointslices", "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    return [
        address
        for s in slices
        for endpoint in s.get("endpoints") or []
        if endpoint.get("conditions", {}).get("ready")
        for address in endpoint["addresses"]
    ]


def test_readiness_probe_gates_the_services_endpoints(real_cluster: Cluster, ns: str) -> None:
    """Ready, and a Service endpoint, only while the exec readiness probe passes."""
    body = _plain_pod(real_cluster, ns, "gated", ["python3", "-c", "import time; time.sleep(600)"])
    (container,) = body["spec"]["containers"]
    container["readinessProbe"] = {
        "exec": {"command": ["test", "-f", "/tmp/ready"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    apply(real_cluster, body)
    service = _service(ns, "gated", "ClusterIP")
    service["spec"]["selector"] = {"app": "gated"}
    apply(real_cluster, service)

    def running() -> dict[str, Any] | None:
        pod: dict[str, Any] = get_json(real_cluster, "-n", ns, "pod", "gated")
        statuses = pod["status"].get("containerStatuses") or [{}]
        return pod if "running" in statuses[0].get("state", {}) else None

    ip = wait_for("the gated pod to run", running, timeout=60)["status"]["podIP"]
    time.sleep(3.0)  # three probe periods, all failing
    assert not pods.pod_ready(get_json(real_cluster, "-n", ns, "pod", "gated"))
    assert _ready_addresses(real_cluster, ns, "gated") == []

    real_cluster.kubectl("-n", ns, "exec", "gated", "--", "touch", "/tmp/ready")
    wait_ready(real_cluster, ns, "gated", timeout=15)
    wait_for(
        "the pod as a ready endpoint",
        lambda: _ready_addresses(real_cluster, ns, "gated") == [ip],
        timeout=15,
        step=0.2,
    )
    real_cluster.kubectl("-n", ns, "exec", "gated", "--", "rm", "/tmp/ready")
    wait_for(
        "the endpoint to turn not ready",
        lambda: _ready_addresses(real_cluster, ns, "gated") == [],
        timeout=15,
        step=0.2,
    )


def _service(ns: str, name: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": kind,
            "selector": {"app": "sip"},
            "ports": [
                {"name": "sip-udp", "port": 5060, "protocol": "UDP"},
                {"name": "sip-tcp", "port": 5060, "protocol": "TCP"},
            ],
        },
    }


def test_sip_options_through_clusterip_and_nodeport(real_cluster: Cluster, ns: str) -> None:
    server = start_server(real_cluster, ns)
    apply(real_cluster, _service(ns, "sip", "ClusterIP"))
    apply(real_cluster, _service(ns, "sip-np", "NodePort"))
    cluster_ip = get_json(real_cluster, "-n", ns, "service", "sip")["spec"]["clusterIP"]
    node_ports = {
        p["protocol"]: int(p["nodePort"])
        for p in get_json(real_cluster, "-n", ns, "service", "sip-np")["spec"]["ports"]
    }
    client = server_pod(ns, "client")
    client["metadata"]["labels"]["app"] = "client"
    apply(real_cluster, client)
    wait_ready(real_cluster, ns, "client")

    targets = [("ClusterIP", cluster_ip, {"UDP": 5060, "TCP": 5060})]
    targets.append(("NodePort", hostnet.NODE_IP, node_ports))
    targets.append(("pod IP", server["status"]["podIP"], {"UDP": 5060, "TCP": 5060}))
    for label, host, ports in targets:
        for transport, port in ports.items():
            from_host = retry_status(
                lambda h=host, p=port, t=transport: options_from_host(h, p, t),
                f"host -> {label} {host}:{port}/{transport}",
            )
            assert from_host == "SIP/2.0 200 OK", (label, transport, from_host)
            from_pod = retry_status(
                lambda h=host, p=port, t=transport: real_cluster.kubectl(
                    "-n", ns, "exec", "client", "--", "python3", "-c", OPTIONS_CLIENT,
                    h, str(p), t,
                ).stdout.strip(),
                f"pod -> {label} {host}:{port}/{transport}",
            )  # fmt: skip
            assert from_pod == "SIP/2.0 200 OK", (label, transport, from_pod)


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is installed by make setup")
def test_sipp_reaches_the_server_through_a_nodeport(real_cluster: Cluster, ns: str) -> None:
    """A peer nobody here wrote (sipp) gets 200 to OPTIONS over UDP and TCP via the NodePort."""
    start_server(real_cluster, ns)
    apply(real_cluster, _service(ns, "sip-np", "NodePort"))
    node_ports = {
        p["protocol"]: int(p["nodePort"])
        for p in get_json(real_cluster, "-n", ns, "service", "sip-np")["spec"]["ports"]
    }
    for transport, flag in (("UDP", "u1"), ("TCP", "t1")):
        port = node_ports[transport]
        retry_status(
            lambda p=port, t=transport: options_from_host(hostnet.NODE_IP, p, t), "before sipp"
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            local_port = s.getsockname()[1]
        result = subprocess.run(
            ["sipp", "-sf", str(SCENARIO), "-m", "1", "-t", flag, "-i", hostnet.NODE_IP,
             "-p", str(local_port), "-timeout", "10s", "-timeout_error", "-nostdin",
             f"{hostnet.NODE_IP}:{port}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 0, (transport, result.stdout[-2000:], result.stderr[-2000:])


def test_dns_resolves_services_and_nothing_outside(real_cluster: Cluster, ns: str) -> None:
    start_server(real_cluster, ns)
    apply(real_cluster, _service(ns, "sip", "ClusterIP"))
    cluster_ip = get_json(real_cluster, "-n", ns, "service", "sip")["spec"]["clusterIP"]
    script = (
        "import socket, sys\n"
        "print(socket.gethostbyname(sys.argv[1]))\n"
        "try:\n    socket.gethostbyname('deb.debian.org')\n"
        "except OSError:\n    print('no outside')\n"
        "s = socket.socket(); s.settimeout(2)\n"
        "try:\n    s.connect(('192.0.2.1', 80))\nexcept OSError as e:\n    print('unreachable')\n"
    )
    out = retry_status(
        lambda: (
            real_cluster.kubectl(
                "-n",
                ns,
                "exec",
                "sip",
                "--",
                "python3",
                "-c",
                script,
                f"sip.{ns}.svc.cluster.local",
            ).stdout
        ),
        "from cluster DNS",
    )
    assert out.split() == [cluster_ip, "no", "outside", "unreachable"]


FLEET = """
apiVersion: sipfleet.io/v1alpha1
kind: SipFleet
metadata: {name: rf}
spec:
  mainServer: {domain: example.com}
  minNodes: 1
  maxNodes: 2
---
apiVersion: sipfleet.io/v1alpha1
kind: SipConference
metadata: {name: rc}
spec:
  uri: sip:rc@example.com
  fleetRef: {name: rf}
  access: {policy: open}
"""


def test_helm_operator_image_runs_a_restricted_fleet(real_cluster: Cluster, ns: str) -> None:
    """The chart installs the operator from the built image into a restricted
    namespace; the operator's server pods (node image) are admitted and Ready."""
    release = f"rn{ns[-6:]}"
    run_helm(
        "--kubeconfig", str(real_cluster.kubeconfig), "install", release, str(CHART),
        "--namespace", ns, "--set", "operator.replicas=1",
        "--set", f"operator.watchNamespaces={{{ns}}}", "--wait", "--timeout=120s",
    )  # fmt: skip
    try:
        operator = get_json(
            real_cluster, "-n", ns, "pods", "-l", "app.kubernetes.io/component=operator"
        )["items"]
        assert [c["image"] for p in operator for c in p["spec"]["containers"]] == [
            "sipfleet/operator:0.1.0"
        ]
        real_cluster.kubectl("-n", ns, "apply", "-f", "-", input=FLEET)

        def servers() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = get_json(
                real_cluster, "-n", ns, "pods", "-l", pods.fleet_selector("rf")
            )["items"]
            roles = sorted(p["metadata"]["labels"][pods.LABEL_ROLE] for p in items)
            ready = all(pods.pod_ready(p) for p in items)
            return items if ready and roles == ["main", "node"] else None

        running = wait_for("the fleet's main and node pods Ready", servers, timeout=120)
        for pod in running:
            (container,) = pod["spec"]["containers"]
            assert container["image"] == NODE_IMAGE
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
    finally:
        real_cluster.kubectl("-n", ns, "delete", "-f", "-", input=FLEET, check=False)
        run_helm(
            "--kubeconfig", str(real_cluster.kubeconfig), "uninstall", release,
            "--namespace", ns, "--wait", "--timeout=60s", check=False,
        )  # fmt: skip
