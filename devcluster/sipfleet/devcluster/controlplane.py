"""The local control plane: etcd, kube-apiserver, kube-controller-manager and
the local kubelet, each a background process recorded in the state dir.

Layout of a state dir::

    kubeconfig                admin kubeconfig (system:masters)
    state.json                ports and node name, reused by later `up` calls
    pki/                      CA, serving cert, client certs, service-account keys
    etcd/                     etcd data
    run/<component>.json      pid records (see procs.py)
    logs/<component>.log      one log per component
    pods/<ns>_<name>_<uid>/   the kubelet's pods (logs, volumes, kubeconfig)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sipfleet.devcluster import binaries, kubeconfig, pki, procs
from sipfleet.devcluster.adminhttp import HTTPClient, plain_get

NODE_NAME = "sipfleet-local"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kubelet")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "job-controller",
)
# The local kubelet also schedules (pods/binding) and mints pod tokens; RBAC
# grants it exactly what it calls, on top of the Node authorizer.
KUBELET_RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "sipfleet:local-kubelet"}}
rules:
- {{apiGroups: [""], resources: [nodes, nodes/status],
   verbs: [get, list, watch, create, patch, update]}}
- {{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}}
- {{apiGroups: [""], resources: [pods], verbs: [get, list, watch, delete]}}
- {{apiGroups: [""], resources: [pods/status], verbs: [patch, update]}}
- {{apiGroups: [""], resources: [pods/binding], verbs: [create]}}
- {{apiGroups: [""], resources: [secrets, configmaps], verbs: [get]}}
- {{apiGroups: [""], resources: [serviceaccounts/token], verbs: [create]}}
- {{apiGroups: ["", events.k8s.io], resources: [events], verbs: [create, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "sipfleet:local-kubelet"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "sipfleet:local-kubelet"}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:node:{NODE_NAME}"}}
"""


class DevClusterError(RuntimeError):
    """A problem the user can fix; the message says how."""


@dataclass
class Ports:
    etcd_client: int = 0
    etcd_peer: int = 0
    apiserver: int = 0
    controller_manager: int = 0
    kubelet: int = 0


@dataclass(frozen=True)
class Layout:
    """Paths inside one state dir."""

    root: Path

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def record(self, component: str) -> Path:
        return self.root / "run" / f"{component}.json"

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    def component_kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"

    @property
    def pods(self) -> Path:
        return self.root / "pods"


def _load_ports(layout: Layout) -> Ports:
    try:
        data = json.loads(layout.state_file.read_text())
        return Ports(**data["ports"])
    except (OSError, ValueError, KeyError, TypeError):
        return Ports()


def _alive(layout: Layout, component: str) -> procs.ProcessRecord | None:
    record = procs.load(layout.record(component))
    return record if record is not None and procs.is_alive(record) else None


def _choose_ports(layout: Layout, api_port: int | None) -> Ports:
    """Reuse recorded ports (kubeconfigs stay valid) unless taken by someone else."""
    ports = _load_ports(layout)
    owners = {
        "etcd_client": "etcd",
        "etcd_peer": "etcd",
        "apiserver": "kube-apiserver",
        "controller_manager": "kube-controller-manager",
        "kubelet": "kubelet",
    }
    for field, owner in owners.items():
        current = getattr(ports, field)
        if _alive(layout, owner) is not None and current:
            continue
        if field == "apiserver" and api_port is not None:
            if not procs.port_is_free(api_port):
                raise DevClusterError(
                    f"port {api_port} on 127.0.0.1 is busy; stop what listens there "
                    "or choose another --api-port (or omit it to pick a free one)"
                )
            setattr(ports, field, api_port)
        elif not current or not procs.port_is_free(current):
            setattr(ports, field, procs.free_port())
    layout.state_file.write_text(json.dumps({"ports": ports.__dict__, "node": NODE_NAME}))
    return ports


class ControlPlane:
    """up / down / status for one state dir."""

    def __init__(self, state_dir: Path, *, out: Callable[[str], None] = print) -> None:
        self.layout = Layout(state_dir.resolve())
        self.out = out

    # -- helpers -----------------------------------------------------------
    @property
    def pki(self) -> pki.PKI:
        return pki.PKI(self.layout.root / "pki", NODE_NAME)

    def _api(self) -> HTTPClient:
        return HTTPClient(self.pki.ca.cert, self.pki.admin.cert, self.pki.admin.key)

    def api_url(self) -> str:
        return f"https://127.0.0.1:{_load_ports(self.layout).apiserver}"

    def api_ready(self) -> bool:
        if not self.pki.admin.cert.is_file():
            return False
        return self._api().request("GET", self.api_url() + "/readyz").status == 200

    def _wait(self, what: str, check: Callable[[], bool], timeout: float, component: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            record = procs.load(self.layout.record(component))
            if record is not None and not procs.is_alive(record):
                lines = "\n  ".join(procs.tail(self.layout.log(component), 8))
                raise DevClusterError(
                    f"{component} exited while waiting for {what}; "
                    f"last lines of {self.layout.log(component)}:\n  {lines}"
                )
            if time.monotonic() > deadline:
                raise DevClusterError(
                    f"timed out after {timeout:.0f}s waiting for {what}; "
                    f"see {self.layout.log(component)}"
                )
            time.sleep(0.1)

    def _start(self, component: str, argv: list[str]) -> None:
        if _alive(self.layout, component) is not None:
            return
        _, record = procs.spawn(component, argv, self.layout.log(component))
        procs.save(record, self.layout.record(component))

    # -- argv per component --------------------------------------------------
    def _etcd_argv(self, bins: binaries.Binaries, ports: Ports) -> list[str]:
        client = f"http://127.0.0.1:{ports.etcd_client}"
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        return [
            str(bins.etcd),
            "--name=sipfleet",
            f"--data-dir={self.layout.root / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=sipfleet={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, bins: binaries.Binaries, ports: Ports) -> list[str]:
        p = self.pki
        return [
            str(bins.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--tls-cert-file={p.serving.cert}",
            f"--tls-private-key-file={p.serving.key}",
            f"--client-ca-file={p.ca.cert}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p.service_account_pub}",
            f"--service-account-signing-key-file={p.service_account_key}",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/24",
            # Endpoints may not point into 127.0.0.0/8; there is no kube-proxy anyway.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            f"--cert-dir={self.layout.root / 'pki' / 'apiserver'}",
            # `kubectl logs` goes through the API server to the local kubelet.
            f"--kubelet-client-certificate={p.apiserver_kubelet_client.cert}",
            f"--kubelet-client-key={p.apiserver_kubelet_client.key}",
            f"--kubelet-certificate-authority={p.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _controller_manager_argv(self, bins: binaries.Binaries, ports: Ports) -> list[str]:
        p = self.pki
        kcfg = self.layout.component_kubeconfig("controller-manager")
        return [
            str(bins.kube_controller_manager),
            f"--kubeconfig={kcfg}",
            f"--authentication-kubeconfig={kcfg}",
            f"--authorization-kubeconfig={kcfg}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            f"--tls-cert-file={p.serving.cert}",
            f"--tls-private-key-file={p.serving.key}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p.service_account_key}",
            f"--root-ca-file={p.ca.cert}",
            "--controllers=" + ",".join(CONTROLLERS),
            "--concurrent-gc-syncs=5",
            "--profiling=false",
        ]

    def _kubelet_argv(self, ports: Ports) -> list[str]:
        p = self.pki
        return [
            sys.executable,
            "-m",
            "sipfleet.devcluster.kubelet",
            f"--state-dir={self.layout.root}",
            f"--kubeconfig={self.layout.component_kubeconfig('kubelet')}",
            f"--node-name={NODE_NAME}",
            f"--port={ports.kubelet}",
            f"--tls-cert-file={p.serving.cert}",
            f"--tls-private-key-file={p.serving.key}",
            f"--client-ca-file={p.ca.cert}",
        ]

    # -- API helpers ---------------------------------------------------------
    def _apply(self, manifest: str) -> None:
        api = self._api()
        for doc in yaml.safe_load_all(manifest):
            kind = doc["kind"].lower() + "s"
            url = (
                f"{self.api_url()}/apis/rbac.authorization.k8s.io/v1/{kind}/"
                f"{doc['metadata']['name']}?fieldManager=sipfleet-devcluster&force=true"
            )
            resp = api.request(
                "PATCH", url, json.dumps(doc).encode(), "application/apply-patch+yaml"
            )
            if resp.status not in (200, 201):
                raise DevClusterError(f"applying {doc['kind']}: HTTP {resp.status} {resp.body!r}")

    def _get(self, path: str) -> dict[str, Any] | None:
        resp = self._api().request("GET", self.api_url() + path)
        return resp.json() if resp.status == 200 else None

    def node_ready(self, since: str = "") -> bool:
        """The Node is Ready (with a heartbeat at or after `since`, RFC 3339 UTC)."""
        node = self._get(f"/api/v1/nodes/{NODE_NAME}")
        if node is None:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(
            c["type"] == "Ready"
            and c["status"] == "True"
            and c.get("lastHeartbeatTime", "") >= since
            for c in conditions
        )

    def default_service_account(self) -> bool:
        return self._get("/api/v1/namespaces/default/serviceaccounts/default") is not None

    # -- commands ------------------------------------------------------------
    def running(self) -> dict[str, procs.ProcessRecord | None]:
        return {c: _alive(self.layout, c) for c in COMPONENTS}

    def up(self, *, api_port: int | None = None, timeout: float = 90.0) -> float:
        """Start whatever is not running; return seconds until everything was ready."""
        began = time.monotonic()
        started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.layout.root.exists() and not self.layout.root.is_dir():
            raise DevClusterError(f"--state-dir {self.layout.root} exists and is not a directory")
        bins = binaries.locate()
        running = self.running()
        if all(running.values()) and self.api_ready():
            self.out(f"already running and healthy: {self.api_url()}")
            self.out(f"export KUBECONFIG={self.layout.admin_kubeconfig}")
            return 0.0
        self.layout.root.mkdir(parents=True, exist_ok=True)
        ports = _choose_ports(self.layout, api_port)
        creds = pki.ensure(self.layout.root / "pki", NODE_NAME)
        server = f"https://127.0.0.1:{ports.apiserver}"
        for path, pair, user in (
            (self.layout.admin_kubeconfig, creds.admin, "sipfleet-admin"),
            (
                self.layout.component_kubeconfig("controller-manager"),
                creds.controller_manager,
                "system:kube-controller-manager",
            ),
            (
                self.layout.component_kubeconfig("kubelet"),
                creds.kubelet,
                f"system:node:{NODE_NAME}",
            ),
        ):
            kubeconfig.write_cert_kubeconfig(path, server, creds.ca.cert, pair.cert, pair.key, user)

        self._start("etcd", self._etcd_argv(bins, ports))
        self._start("kube-apiserver", self._apiserver_argv(bins, ports))
        etcd_url = f"http://127.0.0.1:{ports.etcd_client}/health"
        self._wait("etcd", lambda: plain_get(etcd_url).status == 200, 30, "etcd")
        self._wait("the API server /readyz", self.api_ready, timeout, "kube-apiserver")
        api_ready_after = time.monotonic() - began
        self._apply(KUBELET_RBAC)
        self._start("kube-controller-manager", self._controller_manager_argv(bins, ports))
        self._start("kubelet", self._kubelet_argv(ports))
        # A Node left Ready by an earlier kubelet does not count: wait for a fresh heartbeat.
        self._wait("node Ready", lambda: self.node_ready(since=started_at), 30, "kubelet")
        self._wait(
            "the default ServiceAccount",
            self.default_service_account,
            30,
            "kube-controller-manager",
        )
        total = time.monotonic() - began
        self.out(
            f"API server ready at {server} after {api_ready_after:.1f}s; "
            f"node and controllers ready after {total:.1f}s"
        )
        self.out(f"export KUBECONFIG={self.layout.admin_kubeconfig}")
        return total

    def down(self) -> list[str]:
        """Stop, in reverse order, only the processes this state dir started."""
        stopped: list[str] = []
        for component in reversed(COMPONENTS):
            path = self.layout.record(component)
            record = procs.load(path)
            if record is None:
                continue
            # The kubelet stops its pods first; give it their grace periods.
            if procs.stop(record, timeout=40.0 if component == "kubelet" else 10.0):
                stopped.append(component)
            path.unlink(missing_ok=True)
        for record_path in self._pod_process_records():
            record = procs.load(record_path)
            if record is not None and procs.stop(record, timeout=5.0):
                stopped.append(f"pod process {record.name} (pid {record.pid})")
            record_path.unlink(missing_ok=True)
        self.out("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return stopped

    def _pod_process_records(self) -> Iterator[Path]:
        if self.layout.pods.is_dir():
            yield from self.layout.pods.glob("*/*.proc.json")

    def status(self) -> bool:
        """Print each component's state; True if all run and the API is ready."""
        if not self.layout.state_file.is_file():
            self.out(
                f"no cluster in {self.layout.root}; "
                f"start one with `sipfleet dev up --state-dir {self.layout.root}`"
            )
            return False
        healthy = True
        for component in COMPONENTS:
            record = procs.load(self.layout.record(component))
            if record is None:
                self.out(f"{component}: not started")
                healthy = False
            elif procs.is_alive(record):
                self.out(f"{component}: running (pid {record.pid})")
            else:
                healthy = False
                self.out(f"{component}: crashed (pid {record.pid} is gone); last log lines:")
                for line in procs.tail(Path(record.log), 5):
                    self.out(f"    {line}")
        ready = self.api_ready()
        self.out(f"API {self.api_url()}: {'ready' if ready else 'not ready'}")
        if ready:
            self.out(f"node {NODE_NAME}: {'Ready' if self.node_ready() else 'NotReady'}")
        return healthy and ready
