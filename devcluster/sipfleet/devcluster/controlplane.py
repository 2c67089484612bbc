"""The local cluster: etcd, kube-apiserver, kube-controller-manager and the
real node of realnode.py (kube-scheduler, containerd, the kubelet,
kube-proxy, CoreDNS), each a background process recorded in the state dir
(see layout.py); `up`, `down` and `status`.

A cluster may be held by a process (`up(hold=True)`: a test session, the
demo): when that process is gone without `down`, the next `up` of another
state dir takes the abandoned cluster down first (one real node per machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from sipfleet.devcluster import (
    binaries,
    components,
    hostnet,
    imagebuild,
    kubeconfig,
    nodeconfig,
    pki,
    procs,
)
from sipfleet.devcluster.adminhttp import HTTPClient, plain_get
from sipfleet.devcluster.components import KUBE_PROXY_RBAC, NODE_NAME
from sipfleet.devcluster.layout import Layout, Ports, load_ports
from sipfleet.devcluster.pki import PKI
from sipfleet.devcluster.realnode import (
    NODE_COMPONENTS,
    RealNode,
    RealNodeError,
    require_root,
    state_dir_of,
)

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")
COMPONENTS = (*CONTROL_PLANE, *NODE_COMPONENTS)
# The port each component listens on, by Ports field.
PORT_OWNERS = {
    "etcd_client": "etcd",
    "etcd_peer": "etcd",
    "apiserver": "kube-apiserver",
    "controller_manager": "kube-controller-manager",
    "kubelet": "kubelet",
    "scheduler": "kube-scheduler",
    "kubelet_healthz": "kubelet",
    "proxy_healthz": "kube-proxy",
    "proxy_metrics": "kube-proxy",
}


class DevClusterError(RuntimeError):
    """A problem the user can fix; the message says how."""


def _alive(layout: Layout, component: str) -> procs.ProcessRecord | None:
    record = procs.load(layout.record(component))
    return record if record is not None and procs.is_alive(record) else None


def _choose_ports(layout: Layout, api_port: int | None) -> Ports:
    """Reuse recorded ports (kubeconfigs stay valid) unless taken by someone else."""
    ports = load_ports(layout)
    needed = []
    for field, owner in PORT_OWNERS.items():
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
            needed.append(field)
    kept = [getattr(ports, field) for field in PORT_OWNERS if field not in needed]
    fresh = procs.free_ports(len(needed), exclude=kept)
    if len(fresh) < len(needed):
        raise DevClusterError("no free TCP ports left on 127.0.0.1 between 20000 and 32767")
    for field, port in zip(needed, fresh, strict=True):
        setattr(ports, field, port)
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
        return pki.PKI(self.layout.pki, NODE_NAME)

    def _api(self) -> HTTPClient:
        return HTTPClient(self.pki.ca.cert, self.pki.admin.cert, self.pki.admin.key)

    def api_url(self) -> str:
        """The API server's URL (it listens on the node IP)."""
        return f"https://{hostnet.NODE_IP}:{load_ports(self.layout).apiserver}"

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

    def _start(self, component: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        if _alive(self.layout, component) is not None:
            return
        _, record = procs.spawn(component, argv, self.layout.log(component), env=env)
        procs.save(record, self.layout.record(component))

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

    def up(
        self, *, api_port: int | None = None, timeout: float = 90.0, hold: bool = False
    ) -> float:
        """Start whatever is not running; return seconds until everything was ready.

        With `hold`, the cluster belongs to the calling process: once that
        process is gone, another state dir's `up` takes this cluster down
        (see `_take_down_abandoned`). Raises DevClusterError or HostNetError
        with what to do when it cannot start.
        """
        began = time.monotonic()
        started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.layout.root.exists() and not self.layout.root.is_dir():
            raise DevClusterError(f"--state-dir {self.layout.root} exists and is not a directory")
        bins = binaries.locate()
        real = self._real_node()
        problem = real.socket_path_problem()
        if problem is not None:
            raise DevClusterError(problem)
        running = self.running()
        if all(running.values()) and self.api_ready():
            # The images of the sources as they are now (a code change since `up`).
            self._load_images(real)
            self.out(f"already running and healthy: {self.api_url()}")
            self.out(f"export KUBECONFIG={self.layout.admin_kubeconfig}")
            return 0.0
        self.layout.root.mkdir(parents=True, exist_ok=True)
        ports = _choose_ports(self.layout, api_port)
        creds = pki.ensure(self.layout.pki, NODE_NAME)
        if hold:
            procs.save(procs.this_process("holder"), self.layout.holder)
        self._take_down_abandoned()
        real.network.up()  # refused while another state dir's real node runs
        real.remember_host()
        server = f"https://{hostnet.NODE_IP}:{ports.apiserver}"
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
            (
                self.layout.component_kubeconfig("kube-scheduler"),
                creds.scheduler,
                "system:kube-scheduler",
            ),
            (self.layout.component_kubeconfig("kube-proxy"), creds.kube_proxy, "system:kube-proxy"),
        ):
            kubeconfig.write_cert_kubeconfig(path, server, creds.ca.cert, pair.cert, pair.key, user)

        self._start("etcd", components.etcd_argv(bins, self.layout, ports))
        self._start("kube-apiserver", components.apiserver_argv(bins, self.layout, creds, ports))
        etcd_url = f"http://127.0.0.1:{ports.etcd_client}/health"
        self._wait("etcd", lambda: plain_get(etcd_url).status == 200, 30, "etcd")
        self._wait("the API server /readyz", self.api_ready, timeout, "kube-apiserver")
        api_ready_after = time.monotonic() - began
        self._start(
            "kube-controller-manager",
            components.controller_manager_argv(bins, self.layout, creds, ports),
        )
        # A Node left Ready by an earlier kubelet does not count: a kubelet
        # started now must post a fresh heartbeat.
        since = "" if running["kubelet"] else started_at
        self._up_real_node(real, bins, creds, ports, since)
        self._wait(
            "the default ServiceAccount",
            self.default_service_account,
            30,
            "kube-controller-manager",
        )
        self._wait("CoreDNS Ready", self.dns_ready, 60, "kubelet")
        total = time.monotonic() - began
        self.out(
            f"API server ready at {server} after {api_ready_after:.1f}s; "
            f"node and controllers ready after {total:.1f}s"
        )
        self.out(f"export KUBECONFIG={self.layout.admin_kubeconfig}")
        return total

    def _take_down_abandoned(self) -> None:
        """Take down the real node of another state dir if its holder process is gone
        (a killed test session or demo) or its state dir was deleted.

        A node without a holder (`sipfleet dev up`) is left alone: the host
        network's `up` then refuses, naming its state dir.
        """
        record = hostnet.owner_record()
        if record is None:
            return
        root = state_dir_of(record)
        if root == self.layout.root:
            return
        holder = procs.load(Layout(root).holder)
        if root.is_dir() and (holder is None or procs.is_alive(holder)):
            return
        self.out(f"taking down the real node of {root}: the run that started it has ended")
        ControlPlane(root, out=self.out).down()

    # -- the real node -----------------------------------------------------------
    def _real_node(self) -> RealNode:
        """The real node's handle, its binaries built first if missing (minutes, once)."""
        try:
            require_root()
        except RealNodeError as err:
            raise DevClusterError(str(err)) from err
        if binaries.missing_node_binaries():
            binaries.build()
        missing = binaries.missing_node_binaries()
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise DevClusterError(
                f"missing {names}; run `make setup` (scripts/install-system-deps.sh "
                "and devcluster/build-kube-binaries.sh)"
            )
        return RealNode(self.layout, binaries.node_binaries())

    def _load_images(self, real: RealNode) -> None:
        """Import the pause and CoreDNS images and the project's images, built from
        this checkout (cached by content), unless containerd has these very archives."""
        repo = binaries.source_checkout()
        try:
            images = real.system_images()
            if repo is not None:
                images.append(imagebuild.build(repo, out=self.out))
            for archive, tags in images:
                t0 = time.monotonic()
                if real.import_image(archive, tags):
                    self.out(f"imported {', '.join(tags)} in {time.monotonic() - t0:.1f}s")
        except (RealNodeError, imagebuild.ImageBuildError) as err:
            raise DevClusterError(str(err)) from err

    def _up_real_node(
        self, real: RealNode, bins: binaries.Binaries, creds: PKI, ports: Ports, since: str
    ) -> None:
        """Scheduler, containerd (+ images), kubelet, kube-proxy, CoreDNS."""
        self._apply(KUBE_PROXY_RBAC)
        real.files(creds, ports)
        env = real.env()
        for component in ("kube-scheduler", "containerd"):
            self._start(component, real.argv(component, creds, ports, NODE_NAME), env=env)
        self._wait("containerd", lambda: real.ctr("version").returncode == 0, 30, "containerd")
        self._load_images(real)
        self._start("kubelet", real.argv("kubelet", creds, ports, NODE_NAME), env=env)
        self._start("kube-proxy", real.argv("kube-proxy", creds, ports, NODE_NAME), env=env)
        self._wait("node Ready", lambda: self.node_ready(since=since), 60, "kubelet")
        result = subprocess.run(
            [
                str(bins.kubectl),
                f"--kubeconfig={self.layout.admin_kubeconfig}",
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "-",
            ],
            input=nodeconfig.coredns_manifest(),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise DevClusterError(f"applying CoreDNS: {result.stderr.strip()}")

    def dns_ready(self) -> bool:
        """CoreDNS's Deployment has a Ready replica."""
        deployment = self._get("/apis/apps/v1/namespaces/kube-system/deployments/coredns")
        return bool(deployment and deployment.get("status", {}).get("readyReplicas"))

    def stop_component(self, component: str) -> bool:
        """Stop one running component (SIGTERM, SIGKILL after 10 s), as an outage
        would; `up` starts it again. True if it was running. Raises
        DevClusterError for a component this cluster does not run."""
        if component not in COMPONENTS:
            raise DevClusterError(f"{component} is not a component of this cluster")
        record = _alive(self.layout, component)
        return record is not None and procs.stop(record)

    def down(self) -> list[str]:
        """Stop, in reverse order, only the processes this state dir started.

        The pods are removed before containerd stops, and everything the node
        changed on the host is undone (see RealNode.cleanup). If the state dir
        was deleted while its cluster ran, its processes are found by their
        command lines instead of their records.
        """
        stopped: list[str] = []
        real = RealNode(self.layout, binaries.node_binaries())
        for component in reversed(COMPONENTS):
            path = self.layout.record(component)
            record = procs.load(path)
            if record is None:
                continue
            if component == "containerd" and procs.is_alive(record):
                removed = real.remove_pods()
                if removed:
                    stopped.append(f"{removed} pod sandboxes")
            if procs.stop(record):
                stopped.append(component)
            path.unlink(missing_ok=True)
        if not self.layout.root.is_dir():
            for pid in procs.processes_under(self.layout.root):
                record = procs.record_of(pid, "orphan")
                if record is not None and procs.stop(record):
                    stopped.append(f"{Path(record.argv[0]).name} (pid {pid})")
        undone = real.cleanup()
        if undone:
            self.out("removed from the host: " + ", ".join(undone))
        self.layout.holder.unlink(missing_ok=True)
        self.out("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        leftovers = procs.processes_under(self.layout.root)
        if leftovers:
            pids = " ".join(str(p) for p in leftovers)
            self.out(f"warning: processes still use {self.layout.root}: {pids} (not started by up)")
        return stopped

    def discard_images(self) -> None:
        """Remove the stopped node's image content and snapshots (over 1 GB); the
        next `up` imports the images again. For state dirs never used again (tests).

        Raises DevClusterError while a component still runs.
        """
        running = [c for c, record in self.running().items() if record]
        if running:
            raise DevClusterError(f"{', '.join(running)} still running in {self.layout.root}")
        shutil.rmtree(self.layout.node / "containerd" / "root", ignore_errors=True)

    def _healthy(self, component: str) -> bool:
        """The component's own health endpoint answers 200."""
        ports = load_ports(self.layout)
        if component == "etcd":
            return plain_get(f"http://127.0.0.1:{ports.etcd_client}/health").status == 200
        if component == "containerd":
            return RealNode(self.layout, binaries.node_binaries()).ctr("version").returncode == 0
        if component == "kube-proxy":
            return plain_get(f"http://127.0.0.1:{ports.proxy_healthz}/healthz").status == 200
        if component == "kubelet":
            return plain_get(f"http://127.0.0.1:{ports.kubelet_healthz}/healthz").status == 200
        port = {
            "kube-apiserver": ports.apiserver,
            "kube-controller-manager": ports.controller_manager,
            "kube-scheduler": ports.scheduler,
        }[component]
        host = hostnet.NODE_IP if component == "kube-apiserver" else "127.0.0.1"
        return self._api().request("GET", f"https://{host}:{port}/healthz").status == 200

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
                health = "healthy" if self._healthy(component) else "NOT answering its health check"
                healthy = healthy and health == "healthy"
                self.out(f"{component}: running (pid {record.pid}), {health}")
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
