"""The real node's network on the host, kept inside the machine.

`up` creates, and `down` removes, exactly these (recorded in
``<state-dir>/host/net.json``):

- bridge ``sfnode0`` with no ports, carrying the node IP (this kernel has no
  ``dummy`` driver); the API server, the kubelet and NodePorts bind to it;
- bridge ``sfpods0``, the CNI bridge, with the pods' gateway address;
- a route for the Service range onto ``sfpods0`` (never towards the default
  route) and a blackhole for the rest of the pod /16;
- nftables table ``inet sipfleet``: forwarded traffic is allowed only from
  ``sfpods0`` back to ``sfpods0`` (pod -> Service -> pod); anything else that
  touches the pod, Service or node ranges is dropped, and if the host did
  not forward before, nothing else is forwarded either;
- the sysctls the bridge plugin, the kubelet and kube-proxy change
  (``SYSCTLS``), restored to their earlier values.

Pods get no default route (only routes to the Service range and the node
IP), the bridge plugin does no masquerading, and CoreDNS has no ``forward``
plugin: nothing a pod sends can leave the machine.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

NODE_BRIDGE = "sfnode0"
POD_BRIDGE = "sfpods0"
NODE_IP = "10.245.0.1"
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
POD_SUPERNET = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/24"
API_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
NFT_TABLE = "sipfleet"
OWNER = Path("/run/sipfleet-realnode.owner")
"""The state dir whose cluster holds the host network (one real node per machine)."""

# Host-wide settings the node's parts write (the bridge CNI plugin turns on
# ip_forward; the kubelet sets its kernel defaults; kube-proxy conntrack and
# route_localnet). `down` writes back what was there before `up`.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
)


class HostNetError(RuntimeError):
    """A host network command failed; the message carries its stderr."""


def _run(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, input=stdin, check=False)
    if check and result.returncode != 0:
        raise HostNetError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def _read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    try:
        (Path("/proc/sys") / name).write_text(value + "\n")
    except OSError as err:
        raise HostNetError(f"cannot set {name.replace('/', '.')}={value}: {err}") from err


def _owner() -> str:
    try:
        return OWNER.read_text().strip()
    except OSError:
        return ""


def owner_record() -> Path | None:
    """The record of the state dir whose real node holds the host network, if any."""
    owner = _owner()
    return Path(owner) if owner else None


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def guard_ruleset(forwarded_before: bool) -> str:
    """The ``inet sipfleet`` nftables table (nft -f syntax)."""
    rest = "" if forwarded_before else '\n        counter drop comment "the host did not forward"'
    ranges = f"{{ {POD_SUPERNET}, {SERVICE_CIDR}, {NODE_IP} }}"
    return f"""table inet {NFT_TABLE} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{POD_BRIDGE}" oifname "{POD_BRIDGE}" accept
        iifname {{ "{POD_BRIDGE}", "{NODE_BRIDGE}" }} counter drop
        oifname {{ "{POD_BRIDGE}", "{NODE_BRIDGE}" }} counter drop
        ip saddr {ranges} counter drop
        ip daddr {ranges} counter drop{rest}
    }}
}}
"""


@dataclass(frozen=True)
class HostNetwork:
    """Create and remove the node's host network pieces for one state dir."""

    record: Path

    def _load(self) -> dict[str, object]:
        try:
            data = json.loads(self.record.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def up(self) -> None:
        """Create what is missing; first remember the sysctls as they are now.

        Raises HostNetError if another state dir's real node holds the host
        network (interfaces, rules and NodePorts are host-wide).
        """
        me = str(self.record.resolve())
        owner = self.other_owner()
        if owner:
            raise HostNetError(
                f"another real node runs on this machine (record {owner}); "
                "stop it with `sipfleet dev down --state-dir` on its state dir"
            )
        if not _owner() and (link_exists(NODE_BRIDGE) or link_exists(POD_BRIDGE)):
            raise HostNetError(
                f"{NODE_BRIDGE}/{POD_BRIDGE} exist but no state dir owns them; "
                f"remove them (ip link del) if they are left from a crashed run"
            )
        OWNER.write_text(me + "\n")
        state = self._load()
        if "sysctls" not in state:
            state["sysctls"] = {name: _read_sysctl(name) for name in SYSCTLS}
            self.record.parent.mkdir(parents=True, exist_ok=True)
            self.record.write_text(json.dumps(state))
        before = state["sysctls"]
        assert isinstance(before, dict)
        forwarded_before = before.get("net/ipv4/ip_forward") == "1"
        for bridge, address in ((NODE_BRIDGE, f"{NODE_IP}/32"), (POD_BRIDGE, f"{POD_GATEWAY}/24")):
            if not link_exists(bridge):
                _run("ip", "link", "add", bridge, "type", "bridge")
            _run("ip", "addr", "replace", address, "dev", bridge)
            _run("ip", "link", "set", bridge, "up")
        _run("ip", "route", "replace", SERVICE_CIDR, "dev", POD_BRIDGE, "src", POD_GATEWAY)
        _run("ip", "route", "replace", "blackhole", POD_SUPERNET)
        _run("nft", "delete", "table", "inet", NFT_TABLE, check=False)
        _run("nft", "-f", "-", stdin=guard_ruleset(forwarded_before))
        # Pod -> Service -> pod on the same bridge must pass the host's
        # conntrack both ways (the reply would otherwise skip the un-DNAT).
        _write_sysctl("net/bridge/bridge-nf-call-iptables", "1")

    def other_owner(self) -> str:
        """The record of another state dir whose real node holds the host network, or ""."""
        owner = _owner()
        if owner and owner != str(self.record.resolve()) and Path(owner).is_file():
            return owner
        return ""

    def down(self) -> list[str]:
        """Remove everything `up` created and restore the sysctls; return what was done."""
        done: list[str] = []
        _run("ip", "route", "del", "blackhole", POD_SUPERNET, check=False)
        _run("ip", "route", "del", SERVICE_CIDR, "dev", POD_BRIDGE, check=False)
        # Pods whose sandboxes could not be removed (containerd gone) keep
        # their veth pairs: deleting the host end deletes the pair.
        ports = _run("ip", "-o", "link", "show", "master", POD_BRIDGE, check=False)
        for line in ports.splitlines():
            veth = line.split(":")[1].strip().split("@")[0]
            _run("ip", "link", "del", veth, check=False)
            done.append(f"interface {veth}")
        for bridge in (POD_BRIDGE, NODE_BRIDGE):
            if link_exists(bridge):
                _run("ip", "link", "del", bridge)
                done.append(f"interface {bridge}")
        if _run("nft", "list", "table", "inet", NFT_TABLE, check=False):
            _run("nft", "delete", "table", "inet", NFT_TABLE)
            done.append(f"nftables table inet {NFT_TABLE}")
        sysctls = self._load().get("sysctls")
        if isinstance(sysctls, dict):
            for name, value in sysctls.items():
                if isinstance(value, str) and _read_sysctl(name) not in (None, value):
                    _write_sysctl(name, value)
                    done.append(f"{name.replace('/', '.')}={value}")
        self.record.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if OWNER.read_text().strip() == str(self.record.resolve()):
                OWNER.unlink()
        return done
