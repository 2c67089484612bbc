import re
from pathlib import Path

from sipfleet.devcluster import components, hostnet
from sipfleet.devcluster.binaries import Binaries
from sipfleet.devcluster.layout import Layout, Ports
from sipfleet.devcluster.pki import PKI

BINS = Binaries(*(Path(f"/bin/{n}") for n in ("dir", "etcd", "api", "kcm", "kubectl", "helm")))
LAYOUT = Layout(Path("/state"))
CREDS = PKI(Path("/state/pki"), components.NODE_NAME)
PORTS = Ports(2379, 2380, 6443, 10257, 10250)


def all_argv() -> list[list[str]]:
    return [
        components.etcd_argv(BINS, LAYOUT, PORTS),
        components.apiserver_argv(BINS, LAYOUT, CREDS, PORTS),
        components.controller_manager_argv(BINS, LAYOUT, CREDS, PORTS),
    ]


# Names, not addresses: the token issuer and audience are never contacted.
IDENTIFIERS = ("--service-account-issuer=", "--api-audiences=")


def test_everything_binds_to_loopback_but_the_api_server_to_the_node_ip() -> None:
    for argv in all_argv():
        for arg in argv:
            if arg.startswith(IDENTIFIERS):
                continue
            for host in re.findall(r"https?://([^:/]+)", arg):
                assert host == "127.0.0.1", arg
            if arg.startswith(("--bind-address=", "--advertise-address=")):
                expected = hostnet.NODE_IP if argv[0] == "/bin/api" else "127.0.0.1"
                assert arg.endswith(f"={expected}"), arg


def test_apiserver_enforces_node_and_rbac_authorization() -> None:
    argv = components.apiserver_argv(BINS, LAYOUT, CREDS, PORTS)
    assert "--authorization-mode=Node,RBAC" in argv
    assert "--secure-port=6443" in argv
    assert "--etcd-servers=http://127.0.0.1:2379" in argv


def test_files_live_in_the_state_dir() -> None:
    for argv in all_argv():
        for arg in argv[1:]:
            value = arg.partition("=")[2]
            if value.startswith("/") and not value.startswith("/bin/"):
                assert value.startswith("/state"), arg


def test_controller_manager_runs_the_controllers_the_tests_rely_on() -> None:
    argv = components.controller_manager_argv(BINS, LAYOUT, CREDS, PORTS)
    # All default controllers: EndpointSlices (Services), deployments, GC, disruption...
    assert "--controllers=*" in argv
    assert "--leader-elect=false" in argv  # a restart must not wait for an old lease
