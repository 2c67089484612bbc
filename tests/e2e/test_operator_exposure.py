"""Reaching the fleet from outside the pod network, on the real node.

Members are sipp processes (UDP) and a few lines of socket code (TCP, below:
sipp cannot open a second TCP connection to the address a 302 names) in the
host's network namespace, outside the pod network. In each exposure mode
that can run here (docs/install.md, "Reaching the fleet"), they join through
the main server's Service `expose-sip`, are 302'd to the node server's
advertised address, get a group message there, and when the node is stopped
are REFERred to the main server's advertised address:

- ``NodePort``: the node IP and each server's own node ports (kube-proxy);
- ``HostPort``: the node IP and a host port per server, distinct on the one
  node (the CNI portmap plugin's DNAT, bound to the node IP only);
- ``LoadBalancer``: no load balancer runs here, so the test plays the cloud's
  controller: it routes LB_RANGE onto the port-less node bridge (a packet
  kube-proxy does not translate goes nowhere) and writes an address from it
  into each LoadBalancer Service's status.loadBalancer.ingress (kubectl patch
  --subresource=status); kube-proxy then DNATs that address and port to the
  Service's Pod, as it does for a cloud load balancer's VIP.

The UDP traps of kube-proxy are shown per mode: kubernetes #18933 (the
host's packets to a NodePort or load-balancer IP are SNATed, so an answer to
the Via's port is lost without rport; the host port keeps the source) and
#76517 (a member's fixed source port keeps its conntrack entry on a Pod that
went away: the replacement must get its packets within seconds).

`test_services_and_advertised_addresses` runs on whichever cluster the suite
uses (the real node): the API server takes the Services, the
operator's RBAC suffices, the Pods start with the advertised address and the
status reports it. It sends no SIP through the Services.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kube_support import find_json, get_json
from operator_harness import (
    Members,
    Operator,
    apply,
    conference,
    fleet,
    operator_namespace,
    pods,
    send_group_message,
    status,
    wait_for,
)
from sipfleet.devcluster import hostnet, nodeconfig
from sipfleet.devcluster.cluster import Cluster

pytestmark = pytest.mark.e2e

NODE_IP = hostnet.NODE_IP  # kube-proxy serves NodePorts on this address only
PER_SERVER = 4  # members per server; the first 4 fill the main server
MODES = ("NodePort", "HostPort", "LoadBalancer")
LB_RANGE = nodeconfig.LOAD_BALANCER_RANGE
"""Load-balancer addresses the test hands out itself (no load balancer runs here)."""
LB_IPS = [f"10.245.0.{i}" for i in range(9, 15)]
SNAT_FROM_HOST = {"NodePort": True, "HostPort": False, "LoadBalancer": True}
"""Whether kube-proxy or portmap replaces the source of the host's packets (#18933)."""


class TcpMember:
    """A member over TCP: joins at host:port, follows one 302, listens for the
    server's requests at its Contact (its own listening socket) or on the
    connection it opened."""

    def __init__(self) -> None:
        self.listener = socket.create_server((NODE_IP, 0))
        self.port = self.listener.getsockname()[1]
        self.call_id, self.tag = uuid.uuid4().hex, uuid.uuid4().hex[:8]
        self.conns: list[socket.socket] = []
        self.last = self.listener  # where the last request came from

    def invite(self, host: str, port: int, uri: str, cseq: int) -> str:
        """Send the INVITE on a new connection; the final response's head."""
        conn = socket.create_connection((host, port), timeout=10)
        self.conns.append(conn)
        me = conn.getsockname()
        conn.sendall(
            (
                f"INVITE {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP {me[0]}:{me[1]};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:tcp1@{NODE_IP}>;tag={self.tag}\r\nTo: <{uri}>\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {cseq} INVITE\r\n"
                f"Contact: <sip:tcp1@{NODE_IP}:{self.port};transport=tcp>\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data += conn.recv(65535)
            for head in re.findall(rb"SIP/2.0 [2-6]\d\d[^\r]*\r\n.*?\r\n\r\n", data, re.S):
                return head.decode()
        pytest.fail(f"no final response to the TCP INVITE: {data!r}")

    def ack(self, response: str, cseq: int) -> None:
        contact = re.search(r"Contact: <([^>]+)>", response)
        to = re.search(r"To: ([^\r]+)", response)
        assert contact and to
        me = self.conns[-1].getsockname()
        self.conns[-1].sendall(
            (
                f"ACK {contact[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP {me[0]}:{me[1]};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:tcp1@{NODE_IP}>;tag={self.tag}\r\nTo: {to[1]}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {cseq} ACK\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )

    def wait_for_body(self, body: str, timeout: float = 20.0) -> bytes:
        """Everything received until a request carrying `body` arrived."""
        seen = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and body.encode() not in seen:
            ready, _, _ = select.select([self.listener, *self.conns], [], [], 0.5)
            for sock in ready:
                if sock is self.listener:
                    conn, _ = self.listener.accept()
                    self.conns.append(conn)
                else:
                    seen += sock.recv(65535)
                    self.last = sock
        return seen

    def accept_refer(self, seen: bytes) -> str:
        """Answer the REFER in `seen` with 202 (RFC 3515 2.4.2) on the connection it
        came on; its Refer-To URI."""
        refer = re.search(rb"REFER [^\r]*\r\n.*?\r\n\r\n", seen, re.S)
        assert refer, seen
        head = refer[0].decode()
        copied = [
            line
            for line in head.split("\r\n")
            if re.match(r"(Via|From|To|Call-ID|CSeq|v|f|t|i):", line, re.I)
        ]
        self.last.sendall(
            (
                "SIP/2.0 202 Accepted\r\n" + "\r\n".join(copied) + "\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        target = re.search(r"Refer-To: <([^>]+)>", head)
        assert target, head
        return target[1]

    def close(self) -> None:
        for sock in (*self.conns, self.listener):
            sock.close()


def udp_options(
    host: str, port: int, rport: bool, timeout: float = 2.0, sock: socket.socket | None = None
) -> str | None:
    """An OPTIONS from the host (NODE_IP, from `sock`'s port if given, else a new
    one) to host:port; the answer's status line, or None."""
    with contextlib.ExitStack() as stack:
        if sock is None:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind((NODE_IP, 0))
        sock.settimeout(timeout)
        me = sock.getsockname()
        via = f"{me[0]}:{me[1]};branch=z9hG4bK{uuid.uuid4().hex}" + (";rport" if rport else "")
        call_id = uuid.uuid4().hex
        sock.sendto(
            (
                f"OPTIONS sip:conf@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {via}\r\n"
                f"From: <sip:probe@{NODE_IP}>;tag=1\r\nTo: <sip:conf@{host}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            (host, port),
        )
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535).decode(errors="replace")
            except (TimeoutError, ConnectionRefusedError):
                return None
            if call_id in data:  # not a late answer to an earlier probe
                return data.split("\r\n", 1)[0]
        return None


class KeepAlive:
    """A phone's UDP keep-alive: an OPTIONS every `period` seconds from one fixed
    source port to host:port (so its conntrack entry never idles out), logging
    when answers came (kubernetes #76517: a stale entry keeps a 5-tuple on a
    Pod that is gone)."""

    def __init__(self, host: str, port: int, period: float = 0.25) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((NODE_IP, 0))
        self.host, self.port, self.period = host, port, period
        self.answered: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            if udp_options(self.host, self.port, rport=True, timeout=self.period, sock=self.sock):
                self.answered.append(time.monotonic())
                self.stop.wait(self.period)

    def __enter__(self) -> KeepAlive:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()

    def answered_after(self, t: float) -> bool:
        return any(a > t for a in self.answered)


def fleet_status(kube: Cluster, ns: str) -> dict[str, Any]:
    body: dict[str, Any] = get_json(kube, "sipfleet", "expose", "-n", ns)
    return body.get("status") or {}


def udp_node_port(service: dict[str, Any]) -> int:
    return int(next(p["nodePort"] for p in service["spec"]["ports"] if p["protocol"] == "UDP"))


@dataclass(frozen=True)
class Where:
    """An address members reach a server at: host, UDP port, TCP port."""

    host: str
    udp: int
    tcp: int

    @classmethod
    def parse(cls, advertised: str) -> Where:
        """From the status (``h:p`` or ``h:u/udp,t/tcp``)."""
        host, ports = advertised.split(":", 1)
        both = re.fullmatch(r"(\d+)/udp,(\d+)/tcp", ports)
        return cls(host, int(both[1]), int(both[2])) if both else cls(host, int(ports), int(ports))

    @classmethod
    def of_service(cls, service: dict[str, Any]) -> Where:
        """A NodePort Service at the node IP, a LoadBalancer one at its ingress IP."""
        ports = {p["protocol"]: p for p in service["spec"]["ports"]}
        if service["spec"]["type"] == "LoadBalancer":
            ip = service["status"]["loadBalancer"]["ingress"][0]["ip"]
            return cls(ip, ports["UDP"]["port"], ports["TCP"]["port"])
        return cls(NODE_IP, ports["UDP"]["nodePort"], ports["TCP"]["nodePort"])


@dataclass
class Exposed:
    """One fleet in one exposure mode, in its own namespace."""

    mode: str
    ns: str
    workdir: Path
    lb_ips: dict[str, str] = field(default_factory=dict)
    """Service name -> the load-balancer IP this test gave it."""

    def assign_load_balancer_ips(self, kube: Cluster) -> None:
        """Play the cloud's load-balancer controller: give each LoadBalancer
        Service without an address one of LB_IPS (status subresource)."""
        if self.mode != "LoadBalancer":
            return
        for svc in get_json(kube, "services", "-n", self.ns)["items"]:
            name = svc["metadata"]["name"]
            if svc["spec"]["type"] != "LoadBalancer" or name in self.lb_ips:
                continue
            ip = LB_IPS[len(self.lb_ips)]
            kube.kubectl(
                "patch", "service", name, "-n", self.ns, "--subresource=status",
                "--type=merge",
                "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}),
            )  # fmt: skip
            self.lb_ips[name] = ip


@pytest.fixture(scope="module", params=MODES)
def exposed(
    request: pytest.FixtureRequest, real_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exposed]:
    """A fleet (main server + one node) in the mode of the parameter; in
    LoadBalancer mode the test routes LB_RANGE onto the node bridge and hands
    out the addresses itself, as no load balancer runs here."""
    mode: str = request.param
    ns = f"op-expose-{mode.lower()}"
    workdir = tmp_path_factory.mktemp(ns)
    operator_namespace(real_cluster, ns)
    op = Operator(real_cluster, ns, workdir / "operator.log")
    if mode == "LoadBalancer":
        subprocess.run(
            ["ip", "route", "replace", LB_RANGE, "dev", hostnet.NODE_BRIDGE, "src", NODE_IP],
            check=True,
        )
    op.start()
    try:
        apply(
            real_cluster,
            ns,
            fleet(
                "expose",
                minNodes=1,
                maxNodes=1,
                membersPerNode=PER_SERVER,
                exposure={
                    "mode": mode,
                    "entryServiceType": "LoadBalancer" if mode == "LoadBalancer" else "NodePort",
                },
            ),
            conference("conf", "expose", capacity={"membersPerServer": PER_SERVER}),
        )
        yield Exposed(mode, ns, workdir)
    finally:
        op.stop()
        events = real_cluster.kubectl("get", "events", "-n", ns, "-o", "wide", check=False)
        (workdir / "events.txt").write_text(events.stdout + events.stderr)
        real_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        if mode == "LoadBalancer":
            subprocess.run(["ip", "route", "del", LB_RANGE], check=False)


def test_services_and_advertised_addresses(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ns = "op-expose-api"
    workdir = tmp_path_factory.mktemp(ns)
    operator_namespace(cluster, ns)
    op = Operator(cluster, ns, workdir / "operator.log").start()
    try:
        apply(
            cluster,
            ns,
            fleet(
                "expose",
                minNodes=1,
                maxNodes=1,
                exposure={"mode": "NodePort", "entryServiceType": "NodePort"},
            ),
            conference("conf", "expose"),
        )

        def reported() -> dict[str, Any] | None:
            body = get_json(cluster, "sipfleet", "expose", "-n", ns)
            st: dict[str, Any] = body.get("status") or {}
            nodes = st.get("nodes") or []
            done = nodes and all(n.get("advertised") for n in nodes)
            return st if done and (st.get("mainServer") or {}).get("advertised") else None

        st = wait_for("advertised addresses in the fleet status", reported, timeout=90)
        services = {
            s["metadata"]["name"]: s for s in get_json(cluster, "services", "-n", ns)["items"]
        }
        assert set(services) == {"expose-sip", "expose-main-sip", "expose-node-1-sip"}
        assert {s["spec"]["externalTrafficPolicy"] for s in services.values()} == {"Local"}
        entry = udp_node_port(services["expose-sip"])
        assert st["entryPoint"] == f"<node>:{entry}"
        node = services["expose-node-1-sip"]
        ports = {p["protocol"]: p["nodePort"] for p in node["spec"]["ports"]}
        pod = get_json(cluster, "pod", "expose-node-1", "-n", ns)
        host = pod["status"]["hostIP"]
        # Kubernetes 1.36 gives a Service's UDP and TCP port the same node port.
        udp, tcp = ports["UDP"], ports["TCP"]
        shown = f"{host}:{udp}" if udp == tcp else f"{host}:{udp}/udp,{tcp}/tcp"
        assert st["nodes"][0]["advertised"] == shown
        assert pod["spec"]["containers"][0]["env"][-1] == {
            "name": "SIPFLEET_ADVERTISE_TCP_PORT",
            "value": str(ports["TCP"]),
        }
        wide = cluster.kubectl("get", "sipfleet", "expose", "-n", ns, "-o", "wide").stdout
        assert "ENTRY" in wide and f"<node>:{entry}" in wide
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def check_addresses(kube: Cluster, ex: Exposed, main: Where, node: Where) -> None:
    """Each mode's servers advertise what docs/install.md says they do."""
    services = {s["metadata"]["name"]: s for s in get_json(kube, "services", "-n", ex.ns)["items"]}
    if ex.mode == "HostPort":
        assert set(services) == {"expose-sip"}  # only the entry point
        node_name = get_json(kube, "nodes")["items"][0]["metadata"]["name"]
        for where, pod_name in ((main, "expose-main"), (node, "expose-node-1")):
            pod = get_json(kube, "pod", pod_name, "-n", ex.ns)
            sip = [p for p in pod["spec"]["containers"][0]["ports"] if p["name"] != "admin"]
            # The host port, bound on the node's InternalIP only; the Pod pinned there.
            assert {(p["hostPort"], p["hostIP"]) for p in sip} == {(where.udp, NODE_IP)}
            assert (where.host, where.tcp, pod["spec"]["nodeName"]) == (
                NODE_IP,
                where.udp,
                node_name,
            )
        assert main.udp != node.udp  # two servers on one node: distinct host ports
        assert {main.udp, node.udp} <= set(range(5060, 5100))  # spec.exposure.hostPorts
        return
    assert main == Where.of_service(services["expose-main-sip"])
    assert node == Where.of_service(services["expose-node-1-sip"])
    assert {s["spec"]["externalTrafficPolicy"] for s in services.values()} == {"Local"}
    if ex.mode == "LoadBalancer":
        assert (main.host, node.host) == (
            ex.lb_ips["expose-main-sip"],
            ex.lb_ips["expose-node-1-sip"],
        )
        assert main.udp == main.tcp == node.udp == 5060  # the Service port itself
    else:
        assert main.host == node.host == NODE_IP


def test_member_outside_the_pod_network_joins_is_redirected_gets_messages_and_is_referred(
    real_cluster: Cluster, exposed: Exposed
) -> None:
    kube, ex = real_cluster, exposed

    def advertised() -> dict[str, Any] | None:
        ex.assign_load_balancer_ips(kube)
        st = fleet_status(kube, ex.ns)
        nodes = st.get("nodes") or []
        main = st.get("mainServer") or {}
        ready = main.get("ready") and nodes and all(n["ready"] and n["advertised"] for n in nodes)
        return st if ready and main.get("advertised") else None

    st = wait_for("main and node ready with advertised addresses", advertised, timeout=120)
    main = Where.parse(st["mainServer"]["advertised"])
    node = Where.parse(st["nodes"][0]["advertised"])
    check_addresses(kube, ex, main, node)
    entry = Where.of_service(get_json(kube, "service", "expose-sip", "-n", ex.ns))
    shown = f"{entry.host}:{entry.udp}" if ex.mode == "LoadBalancer" else f"<node>:{entry.udp}"
    assert st["entryPoint"] == shown
    # The shards the operator created carry the advertised addresses.
    shards = wait_for(
        "both shards",
        lambda: (s := status(kube, ex.ns, "conf").get("shards")) and len(s) == 2 and s,
        timeout=60,
    )
    main_uri = f"sip:conf-expose-main@{main.host}:{main.udp}"
    node_uri = f"sip:conf-expose-node-1@{node.host}:{node.udp}"
    assert {s["uri"] for s in shards} == {main_uri, node_uri}

    # kubernetes #18933: kube-proxy SNATs the host's own packets to a NodePort or a
    # load-balancer IP (to the pod bridge's address, another source port), so an
    # answer sent to the Via's port is lost; with rport (RFC 3581) it goes to the
    # source port and comes back. The portmap DNAT of a host port keeps the source.
    assert wait_for("an answer with rport", lambda: udp_options(main.host, main.udp, True), 15)
    without_rport = udp_options(main.host, main.udp, rport=False)
    print(f"#18933 {ex.mode}: answer without rport: {without_rport}")
    assert (without_rport is None) == SNAT_FROM_HOST[ex.mode], without_rport

    # 4 members who leave on "leave-cmd" fill the main server; the 5th is sent on.
    leavers = Members(entry.host, ex.workdir, "m", PER_SERVER, leaver=True, port=entry.udp)
    stayer = Members(entry.host, ex.workdir, "n", 1, leaver=False, port=entry.udp)
    leavers.start()
    try:
        wait_for("the main server full", lambda: len(leavers.joined()) == PER_SERVER, 60)
        stayer.start()
        wait_for("the fifth member joined", lambda: stayer.joined(), timeout=60)
        where = {p[1]: p[3] for g in (leavers, stayer) for p in g.lines("JOINED")}
        on_node = {m for m, uri in where.items() if uri.startswith(node_uri)}
        on_main = {m for m, uri in where.items() if uri.startswith(main_uri)}
        assert on_main == leavers.joined() and on_node == {"n1"}, where
        # Over TCP: the main server is full, so the 302 names the node's TCP address.
        tcp = TcpMember()
        try:
            first = tcp.invite(entry.host, entry.tcp, f"sip:conf@{entry.host}:{entry.tcp}", 1)
            assert first.startswith("SIP/2.0 302"), first
            target = f"sip:conf-expose-node-1@{node.host}:{node.tcp};transport=tcp"
            assert f"Contact: <{target}>" in first, first
            ok = tcp.invite(node.host, node.tcp, target, 2)
            assert ok.startswith("SIP/2.0 200"), ok
            assert f"@{node.host}:{node.tcp};transport=tcp>" in ok, ok  # the node's Contact
            tcp.ack(ok, 2)
            # One group message, sent by a UDP member joining through the entry point.
            body = send_group_message(entry.host, ex.workdir, "s", port=entry.udp)
            wait_for(
                "the group message at every UDP member",
                lambda: leavers.received(body) | stayer.received(body) == set(where),
                timeout=30,
            )
            got = tcp.wait_for_body(body)
            assert body.encode() in got, got
            assert f"Via: SIP/2.0/TCP {node.host}:{node.tcp};".encode() in got, got

            # Make room on the main server, then stop the node: its graceful exit
            # REFERs its members to the main server's advertised address.
            send_group_message(entry.host, ex.workdir, "leave-cmd", port=entry.udp)
            wait_for("the leavers gone", lambda: leavers.left() == on_main, timeout=30)
            wait_for(
                "the main server empty in the status",
                lambda: any(
                    sh["server"] == "expose-main" and sh["members"] == 0
                    for sh in status(kube, ex.ns, "conf").get("shards") or []
                ),
                timeout=30,
            )
            with KeepAlive(node.host, node.udp) as keepalive:
                wait_for("keep-alive answers from the node", lambda: keepalive.answered, 15)
                old_uid = get_json(kube, "pod", "expose-node-1", "-n", ex.ns)["metadata"]["uid"]
                kube.kubectl("delete", "pod", "expose-node-1", "-n", ex.ns, "--wait=false")
                wait_for("the UDP member moved", lambda: stayer.moved() == {"n1"}, timeout=60)
                assert stayer.locations()["n1"] == main.host
                moved_to = [p[3] for p in stayer.lines("MOVED")]
                assert moved_to and moved_to[-1].startswith(main_uri), moved_to
                refer = tcp.wait_for_body("Refer-To:", timeout=30)
                assert f"Refer-To: <{main_uri};transport=tcp".encode() in refer, refer
                # The TCP member follows it: INVITE to the main server's TCP address.
                target = tcp.accept_refer(refer)
                tcp.call_id = uuid.uuid4().hex
                moved = tcp.invite(main.host, main.tcp, target, 1)
                assert moved.startswith("SIP/2.0 200"), moved
                assert f"@{main.host}:{main.tcp};transport=tcp>" in moved, moved
                tcp.ack(moved, 1)
                check_stale_udp_entry(kube, ex, node, old_uid, keepalive)
        finally:
            tcp.close()
    finally:
        leavers.stop()
        stayer.stop()


def check_stale_udp_entry(
    kube: Cluster, ex: Exposed, node: Where, old_uid: str, keepalive: KeepAlive
) -> None:
    """kubernetes #76517: the keep-alive has sent from one source port to the first
    node's address A all along, so its conntrack entry still names that Pod.

    Its replacement surges in under the next index (expose-node-2, another
    address: node-1's Service or host port is still held). Once node-1 is gone,
    node-2 is stopped too, and its replacement is expose-node-1 again, at A (the
    same Service; the lowest free host port). (When node-1 is gone before
    node-2's Service has its address, the replacement is expose-node-1 at A
    directly.) That Pod must get the keep-alive's
    packets within seconds: kube-proxy clears a UDP entry whose endpoint went
    away, and the portmap plugin clears UDP entries of a host port it maps.
    Otherwise the member stays cut off for as long as it keeps sending."""

    def running(name: str, not_uid: str = "") -> dict[str, Any] | None:
        ex.assign_load_balancer_ips(kube)
        pod = find_json(kube, "pod", name, "-n", ex.ns)
        if not pod or pod["metadata"]["uid"] == not_uid or pod["metadata"].get("deletionTimestamp"):
            return None
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
        return pod if ready else None

    def replacement() -> str | None:
        for name, not_uid in (("expose-node-2", ""), ("expose-node-1", old_uid)):
            if running(name, not_uid):
                return name
        return None

    surge = wait_for("a replacement node Ready", replacement, 120)
    if surge == "expose-node-2":
        wait_for(
            "the old node gone",
            lambda: (
                (p := find_json(kube, "pod", "expose-node-1", "-n", ex.ns)) is None
                or p["metadata"]["uid"] != old_uid
            ),
            timeout=120,
        )
        # The old Pod answered until it exited (an empty server exits at once); after
        # that nothing serves A.
        time.sleep(2.0)
        assert not keepalive.answered_after(time.monotonic() - 1.5)
        kube.kubectl("delete", "pod", "expose-node-2", "-n", ex.ns, "--wait=false")
        wait_for("expose-node-1 back", lambda: running("expose-node-1", old_uid), timeout=120)
    # else: node-1 was gone before node-2's Service had an address (a load-balancer
    # address takes its time; this test plays the cloud's controller only while it
    # polls), so the pass that had the address took the lowest free index: node-1
    # again, at A at once. The same check, without a gap before it.
    ready_at = time.monotonic()
    advertised = wait_for(
        "the new node-1 in the status",
        lambda: next(
            (
                n["advertised"]
                for n in fleet_status(kube, ex.ns).get("nodes") or []
                if n["name"] == "expose-node-1" and n["ready"] and n["advertised"]
            ),
            None,
        ),
        timeout=30,
    )
    assert Where.parse(advertised) == node  # the same address A as the first node-1
    wait_for(
        "the keep-alive's fixed source port answered by the new Pod",
        lambda: keepalive.answered_after(ready_at),
        timeout=10,
    )
    first = min(a for a in keepalive.answered if a > ready_at)
    print(f"#76517 {ex.mode}: fixed source port answered {first - ready_at:.2f} s after Ready")


def test_host_port_mode_says_when_no_node_has_the_chosen_address_type(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """nodeAddressType ExternalIP on nodes that only have an InternalIP: no server
    is created, the SipFleet's Exposed condition and a Warning Event say why;
    switched to InternalIP, the main server is placed on the node with a host
    port bound to that address. Runs on whichever cluster the suite uses."""
    ns = "op-expose-hostport-api"
    workdir = tmp_path_factory.mktemp(ns)
    operator_namespace(cluster, ns)
    op = Operator(cluster, ns, workdir / "operator.log").start()
    try:
        exposure = {"mode": "HostPort", "nodeAddressType": "ExternalIP"}
        apply(cluster, ns, fleet("expose", minNodes=0, maxNodes=1, exposure=exposure))

        def exposed_condition() -> dict[str, Any] | None:
            conditions = fleet_status(cluster, ns).get("conditions") or []
            return next((c for c in conditions if c["type"] == "Exposed"), None)

        cond = wait_for("the Exposed condition", exposed_condition, timeout=60)
        assert (cond["status"], cond["reason"]) == ("False", "NodeAddressMissing"), cond
        assert "no schedulable node has an ExternalIP" in cond["message"], cond
        events = get_json(cluster, "events", "-n", ns, "--field-selector=reason=NodeAddressMissing")
        assert events["items"] and events["items"][0]["type"] == "Warning", events
        assert not pods(cluster, ns)  # no server Pod (the operator's own runs here too)

        cluster.kubectl(
            "patch", "sipfleet", "expose", "-n", ns, "--type=merge",
            "-p", json.dumps({"spec": {"exposure": {"nodeAddressType": "InternalIP"}}}),
        )  # fmt: skip
        node = get_json(cluster, "nodes")["items"][0]
        internal = next(
            a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"
        )
        pod = wait_for(
            "the main server placed",
            lambda: find_json(cluster, "pod", "expose-main", "-n", ns),
            timeout=60,
        )
        sip = [p for p in pod["spec"]["containers"][0]["ports"] if p["name"] != "admin"]
        assert {(p["hostPort"], p.get("hostIP")) for p in sip} == {(5060, internal)}
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms == [
            {
                "matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [node["metadata"]["name"]]}
                ]
            }
        ]
        cond = wait_for(
            "Exposed True",
            lambda: (c := exposed_condition()) and c["status"] == "True" and c,
            timeout=60,
        )
        st = fleet_status(cluster, ns)
        assert st["mainServer"]["advertised"] == f"{internal}:5060"
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
