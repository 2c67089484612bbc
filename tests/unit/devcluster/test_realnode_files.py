"""The real node's files: configs, guard rails, image archives, the Dockerfile kept in step."""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
from pathlib import Path

import pytest
from sipfleet.devcluster import hostnet, imagebuild, nodeconfig, ociarchive, realnode
from sipfleet.devcluster.binaries import NodeBinaries
from sipfleet.devcluster.cluster import host_address_towards
from sipfleet.devcluster.layout import Layout

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
BINS = NodeBinaries(*(Path(f"/b/{n}") for n in ("kl", "kp", "ks", "pause", "cd", "dns", "crictl")))


def test_pods_get_no_default_route_and_no_masquerade() -> None:
    conf = json.loads(nodeconfig.cni_conflist(Path("/s/ipam")))
    bridge, portmap = conf["plugins"]
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    assert bridge["ipMasq"] is False and bridge["isDefaultGateway"] is False
    routes = [r["dst"] for r in bridge["ipam"]["routes"]]
    assert routes == [
        hostnet.SERVICE_CIDR,
        f"{hostnet.NODE_IP}/32",
        nodeconfig.LOAD_BALANCER_RANGE,
    ]
    assert "0.0.0.0/0" not in routes


def test_every_registry_points_at_a_dead_local_port() -> None:
    for host in nodeconfig.REGISTRIES:
        text = nodeconfig.registry_hosts_toml(host)
        assert re.findall(r'"(https?://[^"]+)"', text) == ["http://127.0.0.1:9"] * 2
    toml = nodeconfig.containerd_toml(Path("/s/c"), BINS, Path("/run/x"))
    assert "restrict_oom_score_adj = true" in toml
    assert f'sandbox = "{nodeconfig.PAUSE_IMAGE}"' in toml
    assert toml.count('config_path = "/s/c/certs.d"') == 2


def test_kubelet_settings_this_machine_needs() -> None:
    cfg = json.loads(
        nodeconfig.kubelet_config(
            root=Path("/s"),
            containerd_sock=Path("/s/c.sock"),
            ca=Path("/ca"),
            cert=Path("/c"),
            key=Path("/k"),
            port=1,
            healthz_port=2,
        )
    )
    assert cfg["failCgroupV1"] is False and cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["oomScoreAdj"] == 0 and cfg["imageGCHighThresholdPercent"] == 100
    assert cfg["address"] == hostnet.NODE_IP and cfg["healthzBindAddress"] == "127.0.0.1"
    assert cfg["resolvConf"] == "" and cfg["authentication"]["anonymous"]["enabled"] is False


def test_nodeports_only_on_the_node_ip_and_conntrack_sysctls_untouched() -> None:
    cfg = json.loads(nodeconfig.kube_proxy_config(Path("/k"), 1, 2))
    assert cfg["nodePortAddresses"] == [f"{hostnet.NODE_IP}/32"]
    assert cfg["conntrack"]["maxPerCore"] == 0 and cfg["conntrack"]["min"] == 0
    assert cfg["healthzBindAddress"].startswith("127.0.0.1:")


def test_coredns_has_no_forward_plugin() -> None:
    docs = [json.loads(d) for d in nodeconfig.coredns_manifest().split("\n---\n")]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert "forward" not in cm["data"]["Corefile"]
    (svc,) = [d for d in docs if d["kind"] == "Service"]
    assert svc["spec"]["clusterIP"] == hostnet.DNS_SERVICE_IP


@pytest.mark.parametrize("forwarded_before", [True, False])
def test_forwarding_guard(forwarded_before: bool) -> None:
    rules = hostnet.guard_ruleset(forwarded_before)
    lines = [line.strip() for line in rules.splitlines()]
    first = lines.index(f'iifname "{hostnet.POD_BRIDGE}" oifname "{hostnet.POD_BRIDGE}" accept')
    assert all("accept" not in line for line in lines[first + 1 :] if "policy" not in line)
    assert any(line.startswith("ip saddr") and "drop" in line for line in lines)
    assert any("the host did not forward" in line for line in lines) is not forwarded_before


def test_archive_is_docker_save_with_digests(tmp_path: Path) -> None:
    layer = ociarchive.layer_from_files(tmp_path / "l.tar", {"/bin/x": b"hello"})
    again = ociarchive.layer_from_files(tmp_path / "l2.tar", {"/bin/x": b"hello"})
    assert ociarchive.sha256_file(layer) == ociarchive.sha256_file(again)
    config = ociarchive.ImageConfig(entrypoint=["/bin/x"], user="1:1", env={"A": "b"})
    other = ociarchive.ImageConfig(entrypoint=["/bin/y"])
    images = {"a/b:1": config, "a/c:1": other}
    archive = ociarchive.write_archive(tmp_path / "i.tar", images, [layer])
    with tarfile.open(archive) as tar:
        manifest, second = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert second["RepoTags"] == ["a/c:1"] and second["Layers"] == manifest["Layers"]
        assert len([n for n in tar.getnames() if n.endswith("layer.tar")]) == 1
        image = json.load(tar.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        (layer_name,) = manifest["Layers"]
        assert tar.getmember(layer_name).size == layer.stat().st_size
    digest = ociarchive.sha256_file(layer)
    assert manifest["RepoTags"] == ["a/b:1"] and layer_name == f"{digest}/layer.tar"
    assert image["rootfs"]["diff_ids"] == [f"sha256:{digest}"]
    assert image["config"]["User"] == "1:1" and image["config"]["Env"] == ["A=b"]


def _dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    text = (REPO / "images" / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        op, _, rest = line.strip().partition(" ")
        if op == "FROM":
            current = stages.setdefault(rest.split()[-1], [])
        elif op.isupper() and op.isalpha():
            current.append((op, rest))
    return stages


def test_images_follow_the_dockerfile() -> None:
    """images/Dockerfile (the Docker path) and imagebuild (no Docker) build the same images."""
    stages = _dockerfile_stages()
    runtime = dict(stages["runtime"])
    assert runtime["USER"] == f"{imagebuild.UID}:{imagebuild.UID}"
    assert runtime["WORKDIR"] == "/tmp"
    for key in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", f"PATH={imagebuild.VENV}/bin"):
        assert key in runtime["ENV"], key
        name, _, value = key.partition("=")
        assert imagebuild.RUNTIME_ENV[name].startswith(value)
    for spec in imagebuild.IMAGES:
        stage = dict(stages[spec.tag.split("/")[1].split(":")[0]])
        assert json.loads(stage["ENTRYPOINT"]) == [spec.entrypoint]
        assert stage["EXPOSE"].split() == list(spec.ports)
    build = "\n".join(f"{op} {rest}" for op, rest in stages["build"])
    for source in imagebuild.SOURCE_DIRS:
        assert f"COPY {source.split('/')[0]}/" in build


def test_app_layer_has_the_packages_and_console_scripts() -> None:
    files = imagebuild.app_files(REPO, "opt/sipfleet/lib/python3.11/site-packages")
    assert "opt/sipfleet/lib/python3.11/site-packages/sipfleet/node/cli.py" in files
    script = files["opt/sipfleet/bin/sipfleet-operator"]
    assert isinstance(script, bytes) and b"from sipfleet.operator.cli import main" in script
    assert not any("__pycache__" in name for name in files)


def test_the_source_address_follows_the_route() -> None:
    """Loopback is reached from loopback (no packet is sent); pods from the pod bridge."""
    assert host_address_towards("127.0.0.23") == "127.0.0.1"


def test_stale_app_archives_are_pruned_but_not_the_current_or_recent(tmp_path: Path) -> None:
    old, recent, current = (tmp_path / f"app-{n}" for n in ("old", "recent", "current"))
    for d in (old, recent, current):
        d.mkdir()
    stale = time.time() - imagebuild.STALE_S - 60
    os.utime(old, (stale, stale))
    os.utime(current, (stale, stale))
    imagebuild._prune(tmp_path, keep=current)
    assert not old.exists() and recent.exists() and current.exists()


def test_down_of_a_refused_node_leaves_the_running_node_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second `up` is refused; its `down` must not remove the first node's host state."""
    other = tmp_path / "first" / "net.json"
    other.parent.mkdir()
    other.write_text("{}")
    owner = tmp_path / "owner"
    owner.write_text(f"{other}\n")
    monkeypatch.setattr(hostnet, "OWNER", owner)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"host-wide cleanup called: {args}")

    monkeypatch.setattr(realnode, "remove_kubelet_chains", forbidden)
    monkeypatch.setattr(realnode, "remove_cgroups", forbidden)
    monkeypatch.setattr(realnode.subprocess, "run", forbidden)
    monkeypatch.setattr(hostnet.HostNetwork, "down", forbidden)
    node = realnode.RealNode(Layout(tmp_path / "second"), BINS)
    with pytest.raises(hostnet.HostNetError, match="another real node"):
        node.network.up()
    (line,) = node.cleanup()
    assert str(other) in line and owner.read_text() == f"{other}\n"


NAT_RULES = r"""-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N CNI-DN-0a1b
-N CNI-HOSTPORT-DNAT
-N CNI-HOSTPORT-MASQ
-N KUBE-KUBELET-CANARY
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \"sipfleet\" id: \"x\"" -j CNI-DN-0a1b
"""


def test_dev_down_removes_the_portmap_chains_and_only_those(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake iptables (on a PATH of its own) lists the nat table the portmap
    plugin leaves; cleanup deletes the three jumps, then flushes and deletes
    its chains, and leaves the kubelet's and the base chains alone."""
    log = tmp_path / "calls"
    fake = tmp_path / "iptables"
    (tmp_path / "rules").write_text(NAT_RULES)
    fake.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$*" >> "' + str(log) + '"\n'
        'if [ "$3" = "-S" ]; then /bin/cat "' + str(tmp_path / "rules") + '"; fi\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert realnode.remove_portmap_chains() == 3
    calls = log.read_text().splitlines()
    assert calls[0] == "-t nat -S"
    assert calls[1:4] == [
        "-t nat -D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-t nat -D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-t nat -D POSTROUTING -m comment --comment CNI portfwd requiring masquerade "
        "-j CNI-HOSTPORT-MASQ",
    ]
    chains = ("CNI-DN-0a1b", "CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ")
    assert calls[4:] == [f"-t nat -F {c}" for c in chains] + [f"-t nat -X {c}" for c in chains]


def test_containerd_sockets_fit_a_unix_socket_path_whatever_the_state_dir() -> None:
    """A unix socket path has at most 104 bytes (sun_path); pytest's basetemp plus a
    long test name made `<state dir>/node/containerd/containerd.sock.ttrpc` longer."""
    deep = Path("/tmp/pytest-of-root/pytest-4590/" + "x" * 120 + "/state")
    node = realnode.RealNode(Layout(deep), BINS)
    toml = nodeconfig.containerd_toml(node.containerd_dir, BINS, node.socket_dir)
    sockets = re.findall(r'address = "(/[^"]+)"', toml)
    assert sockets == [str(node.containerd_sock), f"{node.containerd_sock}.ttrpc"]
    assert all(len(s) < 104 for s in sockets)
    assert node.socket_dir != realnode.RealNode(Layout(deep.parent), BINS).socket_dir


def test_a_state_dir_too_long_for_the_kubelets_sockets_is_named_with_the_limit() -> None:
    fits = realnode.RealNode(Layout(Path("/tmp/sf-x/state")), BINS)
    assert fits.socket_path_problem() is None
    deep = Path("/tmp/" + "d" * 70 + "/state")
    problem = realnode.RealNode(Layout(deep), BINS).socket_path_problem()
    assert problem is not None
    assert f"--state-dir {deep} is too long" in problem
    allowed = int(problem.split("at most ")[2].split(" characters")[0])
    shorter = realnode.RealNode(Layout(Path("/" + "s" * (allowed - 1))), BINS)
    assert shorter.socket_path_problem() is None
    longer = realnode.RealNode(Layout(Path("/" + "s" * allowed)), BINS)
    assert longer.socket_path_problem() is not None
