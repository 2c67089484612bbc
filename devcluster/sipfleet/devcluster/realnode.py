"""The real node: containerd + runc, CNI bridge, the kubelet, kube-proxy,
kube-scheduler and CoreDNS, next to the control plane of controlplane.py.

`RealNode.files` writes the configs; `RealNode.argv` gives each process's
command line (started and recorded like the control plane's); `images`
loads the local images into containerd; `cleanup` undoes on the host what
the node did there (pods, mounts, cgroups, kube-proxy's tables, the CNI
portmap plugin's host-port chains, the host network of hostnet.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sipfleet.devcluster import hostnet, nodeconfig, ociarchive
from sipfleet.devcluster.binaries import NodeBinaries, cache_root
from sipfleet.devcluster.layout import Layout, Ports
from sipfleet.devcluster.pki import PKI

NODE_COMPONENTS = ("kube-scheduler", "containerd", "kubelet", "kube-proxy")
# Host directories containerd and the CNI make whatever their config says
# (shim sockets, network namespaces, the CNI result cache); `cleanup` removes
# those that did not exist before the first `up`.
HOST_DIRS = (Path("/run/containerd"), Path("/run/netns"), Path("/var/lib/cni"))
# iptables(-nft) chains the kubelet makes in the host's tables, by table; the
# filter ones are jumped to from INPUT and OUTPUT.
KUBELET_CHAINS = {
    "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"),
    "mangle": ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"),
    "nat": ("KUBE-KUBELET-CANARY",),
}
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_SOCKET_PATH = 107
"""Bytes a unix socket path may have on Linux (sun_path is 108, with the NUL)."""
SOCKET_ROOT = Path("/run/sipfleet")
"""Parent of each node's short socket dir (RealNode.socket_dir); removed when empty."""


def state_dir_of(host_record: Path) -> Path:
    """The state dir whose `RealNode.host_record` is `host_record`."""
    return host_record.parents[2]


class RealNodeError(RuntimeError):
    """The real node cannot start here; the message says why."""


@dataclass(frozen=True)
class RealNode:
    """Paths and commands of the real node of one state dir."""

    layout: Layout
    bins: NodeBinaries

    # -- paths ---------------------------------------------------------------
    @property
    def containerd_dir(self) -> Path:
        return self.layout.node / "containerd"

    @property
    def socket_dir(self) -> Path:
        """Where containerd's sockets live: a short path named after the state dir
        (unix socket paths are limited to 104 bytes; the state dir may be long)."""
        digest = hashlib.sha256(str(self.layout.root.resolve()).encode()).hexdigest()
        return SOCKET_ROOT / digest[:16]

    @property
    def longest_socket(self) -> Path:
        """The longest unix socket path the node creates under the state dir: the
        kubelet's device-plugin registration socket under its root dir."""
        return self.kubelet_dir / "root" / "device-plugins" / "kubelet.sock"

    def socket_path_problem(self) -> str | None:
        """What is wrong when the state dir is too long for the kubelet's unix sockets
        (at most MAX_SOCKET_PATH bytes), with the longest state dir allowed; else None."""
        longest = len(str(self.longest_socket.resolve()).encode())
        if longest <= MAX_SOCKET_PATH:
            return None
        root = str(self.layout.root.resolve())
        allowed = len(root.encode()) - (longest - MAX_SOCKET_PATH)
        return (
            f"--state-dir {root} is too long for the kubelet's unix sockets under it "
            f"(at most {MAX_SOCKET_PATH} bytes): use a state dir of at most "
            f"{allowed} characters, e.g. /tmp/sipfleet-dev"
        )

    @property
    def containerd_sock(self) -> Path:
        return self.socket_dir / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.layout.node / "kubelet"

    @property
    def host_record(self) -> Path:
        """The host network's record (`state_dir_of` goes back from it)."""
        return self.layout.node / "host" / "net.json"

    @property
    def network(self) -> hostnet.HostNetwork:
        return hostnet.HostNetwork(self.host_record)

    @property
    def dirs_record(self) -> Path:
        return self.layout.node / "host" / "dirs.json"

    def remember_host(self) -> None:
        """Note which of `HOST_DIRS` and nftables tables exist now (once, before the first `up`)."""
        if not self.dirs_record.is_file():
            self.dirs_record.parent.mkdir(parents=True, exist_ok=True)
            existing = [str(d) for d in HOST_DIRS if d.exists()]
            self.dirs_record.write_text(json.dumps({"dirs": existing, "tables": nft_tables()}))

    # -- files and command lines -------------------------------------------------
    def files(self, creds: PKI, ports: Ports) -> None:
        """Write containerd's, the CNI's, the kubelet's and kube-proxy's configs."""
        cdir = self.containerd_dir
        (cdir / "net.d").mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        (cdir / "config.toml").write_text(
            nodeconfig.containerd_toml(cdir, self.bins, self.socket_dir)
        )
        for host in nodeconfig.REGISTRIES:
            hosts = cdir / "certs.d" / host / "hosts.toml"
            hosts.parent.mkdir(parents=True, exist_ok=True)
            hosts.write_text(nodeconfig.registry_hosts_toml(host))
        (cdir / "net.d" / "10-sipfleet.conflist").write_text(
            nodeconfig.cni_conflist(self.layout.node / "cni" / "ipam")
        )
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        (self.kubelet_dir / "config.json").write_text(
            nodeconfig.kubelet_config(
                root=self.layout.node,
                containerd_sock=self.containerd_sock,
                ca=creds.ca.cert,
                cert=creds.serving.cert,
                key=creds.serving.key,
                port=ports.kubelet,
                healthz_port=ports.kubelet_healthz,
            )
        )
        (self.layout.node / "kube-proxy.json").write_text(
            nodeconfig.kube_proxy_config(
                self.layout.component_kubeconfig("kube-proxy"),
                ports.proxy_healthz,
                ports.proxy_metrics,
            )
        )

    def env(self) -> dict[str, str]:
        """PATH with containerd's shim, runc and the host tools (nft, ip, mount)."""
        tools = "/usr/sbin:/usr/bin:/sbin:/bin"
        path = f"{self.bins.containerd_bin_dir}:{self.bins.runc.parent}:{tools}"
        return {**os.environ, "PATH": path}

    def argv(self, component: str, creds: PKI, ports: Ports, node_name: str) -> list[str]:
        """The command line of one of `NODE_COMPONENTS`."""
        if component == "containerd":
            return [str(self.bins.containerd), "--config", str(self.containerd_dir / "config.toml")]
        if component == "kubelet":
            return [
                str(self.bins.kubelet),
                f"--config={self.kubelet_dir / 'config.json'}",
                f"--kubeconfig={self.layout.component_kubeconfig('kubelet')}",
                f"--root-dir={self.kubelet_dir / 'root'}",
                f"--hostname-override={node_name}",
                f"--node-ip={hostnet.NODE_IP}",
                "--v=1",
            ]
        if component == "kube-proxy":
            return [
                str(self.bins.kube_proxy),
                f"--config={self.layout.node / 'kube-proxy.json'}",
                f"--hostname-override={node_name}",
                "--v=1",
            ]
        if component == "kube-scheduler":
            kcfg = self.layout.component_kubeconfig("kube-scheduler")
            return [
                str(self.bins.kube_scheduler),
                f"--kubeconfig={kcfg}",
                f"--authentication-kubeconfig={kcfg}",
                f"--authorization-kubeconfig={kcfg}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.scheduler}",
                f"--tls-cert-file={creds.serving.cert}",
                f"--tls-private-key-file={creds.serving.key}",
                "--leader-elect=false",
                "--profiling=false",
            ]
        raise ValueError(f"not a node component: {component}")

    # -- images ----------------------------------------------------------------
    def ctr(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run ctr against this node's containerd, in the CRI's ``k8s.io`` namespace."""
        return subprocess.run(
            [str(self.bins.ctr), "--address", str(self.containerd_sock), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def image_refs(self) -> set[str]:
        result = self.ctr("images", "ls", "-q")
        return set(result.stdout.split()) if result.returncode == 0 else set()

    @property
    def imported_record(self) -> Path:
        """tag -> archive last imported (an archive's path names its content)."""
        return self.layout.node / "images.json"

    def import_image(self, archive: Path, tags: Sequence[str]) -> bool:
        """Import a docker-save archive unless this very archive gave all `tags` already.

        Returns True if it imported. Raises RealNodeError with ctr's message
        if the import fails.
        """
        try:
            imported = json.loads(self.imported_record.read_text())
        except (OSError, ValueError):
            imported = {}
        refs = self.image_refs()
        if all(imported.get(t) == str(archive) and _full_ref(t) in refs for t in tags):
            return False
        result = self.ctr("images", "import", str(archive))
        if result.returncode != 0:
            raise RealNodeError(f"ctr images import {archive}: {result.stderr.strip()}")
        imported.update({t: str(archive) for t in tags})
        self.imported_record.write_text(json.dumps(imported, indent=1))
        return True

    def system_images(self) -> list[tuple[Path, list[str]]]:
        """The pause and CoreDNS images: one binary each, archives cached by content."""
        out: list[tuple[Path, list[str]]] = []
        for tag, binary, inside, user in (
            (nodeconfig.PAUSE_IMAGE, self.bins.pause, "/pause", "65535"),
            (nodeconfig.COREDNS_IMAGE, self.bins.coredns, "/coredns", "65534"),
        ):
            digest = ociarchive.sha256_file(binary)[:16]
            cache = cache_root() / "images" / f"{tag.split('/')[-1].replace(':', '-')}-{digest}"
            archive = cache / "image.tar"
            if not archive.is_file():
                layer = ociarchive.layer_from_files(cache / "layer.tar", {inside: binary})
                config = ociarchive.ImageConfig(entrypoint=[inside], user=user)
                ociarchive.write_archive(archive, {tag: config}, [layer])
            out.append((archive, [tag]))
        return out

    # -- teardown --------------------------------------------------------------
    def remove_pods(self) -> int:
        """Stop and remove every pod sandbox (containers, netns, CNI addresses)."""
        if not self.containerd_sock.exists():
            return 0
        crictl = [str(self.bins.crictl), "-r", f"unix://{self.containerd_sock}", "--timeout", "30s"]
        listed = subprocess.run(
            [*crictl, "pods", "-q"], capture_output=True, text=True, check=False, timeout=60
        )
        ids = listed.stdout.split()
        if ids:
            subprocess.run(
                [*crictl, "rmp", "-f", *ids],
                capture_output=True,
                check=False,
                timeout=120,
                env=self.env(),
            )
        return len(ids)

    def cleanup(self) -> list[str]:
        """Undo on the host what the node did; return a line per thing removed.

        When another state dir's real node holds the host (this one's `up`
        was refused), only this state dir's own mounts are touched: the
        tables, chains, cgroups and bridges are that node's.
        """
        done: list[str] = []
        other = self.network.other_owner()
        if other:
            unmounted = unmount_under(self.layout.node)
            if unmounted:
                done.append(f"{unmounted} mounts under {self.layout.node}")
            return [*done, f"nothing host-wide: the host network belongs to {other}"]
        for family, table in KUBE_PROXY_TABLES:
            listed = subprocess.run(["nft", "list", "table", family, table], capture_output=True)
            if listed.returncode == 0:
                subprocess.run(["nft", "delete", "table", family, table], check=False)
                done.append(f"nftables table {family} {table}")
        unmounted = unmount_under(self.layout.node)
        if unmounted:
            done.append(f"{unmounted} mounts under {self.layout.node}")
        killed = kill_cgroup_tasks("kubepods")
        if killed:
            done.append(f"{killed} container processes left without containerd")
        removed = remove_cgroups("kubepods")
        if removed:
            done.append(f"{removed} kubepods cgroups")
        for cached in Path("/var/lib/cni/results").glob(f"{nodeconfig.CNI_NETWORK}-*"):
            cached.unlink(missing_ok=True)
        done += self.network.down()
        if self.socket_dir.exists():
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            done.append(f"socket dir {self.socket_dir}")
            with contextlib.suppress(OSError):
                SOCKET_ROOT.rmdir()  # only when no other node's sockets are left
        removed_chains = remove_kubelet_chains()
        if removed_chains:
            done.append(f"{removed_chains} kubelet iptables chains")
        removed_chains = remove_portmap_chains()
        if removed_chains:
            done.append(f"{removed_chains} CNI portmap iptables chains")
        try:
            before = json.loads(self.dirs_record.read_text())
            existed, tables = set(before["dirs"]), before["tables"]
        except (OSError, ValueError, KeyError, TypeError):
            existed, tables = {str(d) for d in HOST_DIRS}, None
        if isinstance(tables, list):
            for table in nft_tables():
                if table not in tables and nft_table_is_empty(table):
                    subprocess.run(["nft", "delete", "table", *table.split()], check=False)
                    done.append(f"empty nftables table {table}")
        for d in HOST_DIRS:
            if str(d) not in existed and d.is_dir():
                # /run/netns may hold others' namespaces by now: only if empty.
                if d.name == "netns":
                    with contextlib.suppress(OSError):
                        d.rmdir()
                else:
                    shutil.rmtree(d, ignore_errors=True)
                if not d.exists():
                    done.append(f"directory {d}")
        self.dirs_record.unlink(missing_ok=True)
        return done


def nft_tables() -> list[str]:
    """The host's nftables tables as ``family name``."""
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return [line.removeprefix("table ").strip() for line in out.stdout.splitlines() if line]


def nft_table_is_empty(table: str) -> bool:
    """No rules in `table` and no chains but base chains (those iptables-nft makes)."""
    out = subprocess.run(
        ["nft", "-j", "list", "table", *table.split()], capture_output=True, text=True, check=False
    )
    try:
        items = json.loads(out.stdout)["nftables"]
    except (ValueError, KeyError):
        return False
    for item in items:
        if "rule" in item or "set" in item or "map" in item:
            return False
        if "chain" in item and "hook" not in item["chain"]:
            return False
    return True


def remove_kubelet_chains() -> int:
    """Delete `KUBELET_CHAINS` (and the jumps to them) with iptables and ip6tables."""
    count = 0
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for base in ("INPUT", "OUTPUT"):
            for _ in range(10):
                jump = [tool, "-t", "filter", "-D", base, "-j", "KUBE-FIREWALL"]
                if subprocess.run(jump, capture_output=True).returncode != 0:
                    break
        for table, chains in KUBELET_CHAINS.items():
            for chain in chains:
                flushed = subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
                if flushed.returncode == 0:
                    subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)
                    count += 1
    return count


PORTMAP_CHAINS = ("CNI-HOSTPORT-", "CNI-DN-")
"""Prefixes of the nat chains the CNI portmap plugin makes for host ports."""


def remove_portmap_chains() -> int:
    """Delete the portmap plugin's nat chains (`PORTMAP_CHAINS`) and the jumps to
    them from the base chains, with iptables and ip6tables; return how many chains.

    A Pod deleted through the kubelet has its ``CNI-DN-*`` chain removed by the
    plugin; the shared ``CNI-HOSTPORT-*`` chains and those of Pods still running
    at `dev down` stay until removed here.
    """
    count = 0
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        listed = subprocess.run([tool, "-t", "nat", "-S"], capture_output=True, text=True)
        ours: list[str] = []
        for line in listed.stdout.splitlines():
            words = shlex.split(line)  # comments are quoted ("CNI portfwd requiring masquerade")
            if words[:1] == ["-N"] and words[1].startswith(PORTMAP_CHAINS):
                ours.append(words[1])
            elif words[:1] == ["-A"] and "-j" in words:
                target = words[words.index("-j") + 1]
                if target.startswith(PORTMAP_CHAINS) and not words[1].startswith(PORTMAP_CHAINS):
                    subprocess.run([tool, "-t", "nat", "-D", *words[1:]], capture_output=True)
        for chain in ours:
            subprocess.run([tool, "-t", "nat", "-F", chain], capture_output=True)
        for chain in ours:
            if (
                subprocess.run([tool, "-t", "nat", "-X", chain], capture_output=True).returncode
                == 0
            ):
                count += 1
    return count


def _full_ref(tag: str) -> str:
    """The name containerd stores `tag` under (``docker.io/`` added to a bare name)."""
    first = tag.split("/")[0]
    return tag if "/" in tag and ("." in first or ":" in first) else f"docker.io/{tag}"


def unmount_under(root: Path) -> int:
    """Lazily unmount every mount point under `root`, deepest first; return how many."""
    prefix = str(root.resolve()) + "/"
    points: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    count = 0
    for point in sorted(set(points), key=len, reverse=True):
        if subprocess.run(["umount", "-l", point], capture_output=True).returncode == 0:
            count += 1
    return count


def kill_cgroup_tasks(name: str) -> int:
    """SIGKILL every process in the cgroup `name` (and below) of every v1 hierarchy.

    Only pods whose containerd is gone are left there by the time `cleanup`
    runs (a crashed run); returns how many processes were signalled.
    """
    pids: set[int] = set()
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        for procs_file in (hierarchy / name).rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs_file.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def remove_cgroups(name: str) -> int:
    """Remove the (empty) cgroup `name` and its children in every v1 hierarchy."""
    count = 0
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for deadline_try in range(20):
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))
            for d in [*reversed(dirs), top]:
                with contextlib.suppress(OSError):
                    d.rmdir()
                    count += 1
            if not top.exists() or deadline_try == 19:
                break
            time.sleep(0.1)
    return count


def require_root() -> None:
    """The real node changes the host's network and cgroups: root only."""
    if os.geteuid() != 0:
        raise RealNodeError(
            "the local cluster needs root (it creates network interfaces, cgroups, mounts "
            "and containers): run it with sudo"
        )
    for tool in ("ip", "nft", "umount"):
        if shutil.which(tool) is None:
            raise RealNodeError(f"{tool} is not installed; run scripts/install-system-deps.sh")
