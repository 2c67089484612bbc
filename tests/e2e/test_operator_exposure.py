"""Reaching the fleet from outside the pod network, on the real node (kube-proxy).

Members are sipp processes in the host's network namespace, outside the pod
network: they join through the main server's Service at the node address and
its NodePort, are 302'd to the node server's advertised address (the node
address and that server's own NodePort), and get a group message there; when
the node is stopped, its members are REFERred to the main server's advertised
address. The
fleet runs with `exposure.mode: NodePort` (docs/install.md, "Reaching the
fleet"). Members send rport (RFC 3581); one probe shows that without it the
answers are lost (kubernetes #18933). UDP members are sipp (resident.xml
follows the 302 with `setdest`); the TCP member is a few lines of socket code
below (sipp cannot open a second TCP connection to the address a 302 names).

`test_services_and_advertised_addresses` runs on whichever cluster the suite
uses (the process kubelet by default): the API server takes the Services, the
operator's RBAC suffices, the Pods start with the advertised address and the
status reports it. It sends no SIP through the Services.
"""

from __future__ import annotations

import re
import select
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_support import get_json
from operator_harness import (
    Members,
    Operator,
    apply,
    conference,
    fleet,
    operator_namespace,
    send_group_message,
    status,
    wait_for,
)
from sipfleet.devcluster import hostnet
from sipfleet.devcluster.cluster import Cluster

pytestmark = pytest.mark.e2e

NS = "op-expose"
NODE_IP = hostnet.NODE_IP  # kube-proxy serves NodePorts on this address only
PER_SERVER = 4  # members per server; the first 4 fill the main server


class TcpMember:
    """A member over TCP: joins at host:port, follows one 302, listens for the
    server's requests at its Contact (its own listening socket) or on the
    connection it opened."""

    def __init__(self) -> None:
        self.listener = socket.create_server((NODE_IP, 0))
        self.port = self.listener.getsockname()[1]
        self.call_id, self.tag = uuid.uuid4().hex, uuid.uuid4().hex[:8]
        self.conns: list[socket.socket] = []

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
        return seen

    def close(self) -> None:
        for sock in (*self.conns, self.listener):
            sock.close()


def udp_options(port: int, rport: bool, timeout: float = 2.0) -> str | None:
    """An OPTIONS from the host to NODE_IP:port; the answer's status line, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((NODE_IP, 0))
        s.settimeout(timeout)
        me = s.getsockname()
        via = f"{me[0]}:{me[1]};branch=z9hG4bK{uuid.uuid4().hex}" + (";rport" if rport else "")
        s.sendto(
            (
                f"OPTIONS sip:conf@{NODE_IP}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {via}\r\n"
                f"From: <sip:probe@{NODE_IP}>;tag=1\r\nTo: <sip:conf@{NODE_IP}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            (NODE_IP, port),
        )
        try:
            return s.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
        except TimeoutError:
            return None


def fleet_status(kube: Cluster) -> dict[str, Any]:
    body: dict[str, Any] = get_json(kube, "sipfleet", "expose", "-n", NS)
    return body.get("status") or {}


def udp_node_port(service: dict[str, Any]) -> int:
    return int(next(p["nodePort"] for p in service["spec"]["ports"] if p["protocol"] == "UDP"))


@pytest.fixture(scope="module")
def exposed(real_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    workdir = tmp_path_factory.mktemp("op-expose")
    op = Operator(
        operator_namespace(real_cluster, NS, workdir), NS, workdir / "operator.log"
    ).start()
    try:
        apply(
            real_cluster,
            NS,
            fleet(
                "expose",
                minNodes=1,
                maxNodes=1,
                membersPerNode=PER_SERVER,
                exposure={"mode": "NodePort", "entryServiceType": "NodePort"},
            ),
            conference("conf", "expose", capacity={"membersPerServer": PER_SERVER}),
        )
        yield workdir
    finally:
        op.stop()
        real_cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def test_services_and_advertised_addresses(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ns = "op-expose-api"
    workdir = tmp_path_factory.mktemp(ns)
    op = Operator(operator_namespace(cluster, ns, workdir), ns, workdir / "operator.log").start()
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


def test_member_joins_through_the_entry_nodeport_and_is_redirected_to_the_node(
    real_cluster: Cluster, exposed: Path
) -> None:
    def advertised() -> dict[str, Any] | None:
        st = fleet_status(real_cluster)
        nodes = st.get("nodes") or []
        main = st.get("mainServer") or {}
        ready = main.get("ready") and nodes and all(n["ready"] and n["advertised"] for n in nodes)
        return st if ready and main.get("advertised") else None

    st = wait_for("main and node ready with advertised addresses", advertised, timeout=120)
    entry = get_json(real_cluster, "service", "expose-sip", "-n", NS)
    main_svc = get_json(real_cluster, "service", "expose-main-sip", "-n", NS)
    node_svc = get_json(real_cluster, "service", "expose-node-1-sip", "-n", NS)
    entry_port, main_port, node_port = map(udp_node_port, (entry, main_svc, node_svc))
    assert st["entryPoint"] == f"<node>:{entry_port}"
    assert st["mainServer"]["advertised"].startswith(f"{NODE_IP}:{main_port}")
    assert st["nodes"][0]["advertised"].startswith(f"{NODE_IP}:{node_port}")
    # The shards the operator created carry the advertised addresses.
    shards = wait_for(
        "both shards",
        lambda: (s := status(real_cluster, NS, "conf").get("shards")) and len(s) == 2 and s,
        timeout=60,
    )
    assert {s["uri"] for s in shards} == {
        f"sip:conf-expose-main@{NODE_IP}:{main_port}",
        f"sip:conf-expose-node-1@{NODE_IP}:{node_port}",
    }

    # kubernetes #18933 on this node: kube-proxy SNATs the host's own packets to a
    # NodePort (with a random source port), so an answer sent to the Via port
    # is lost; with rport (RFC 3581) it goes to the source port and comes back.
    assert wait_for("an answer with rport", lambda: udp_options(entry_port, rport=True), 15)
    assert udp_options(entry_port, rport=False) is None

    # 4 members who leave on "leave-cmd" fill the main server; the 5th is sent on.
    leavers = Members(NODE_IP, exposed, "m", PER_SERVER, leaver=True, port=entry_port).start()
    stayer = Members(NODE_IP, exposed, "n", 1, leaver=False, port=entry_port)
    try:
        wait_for("the main server full", lambda: len(leavers.joined()) == PER_SERVER, 60)
        stayer.start()
        wait_for("the fifth member joined", lambda: stayer.joined(), timeout=60)
        where = {p[1]: p[3] for g in (leavers, stayer) for p in g.lines("JOINED")}
        on_node = {m for m, uri in where.items() if f"@{NODE_IP}:{node_port}" in uri}
        on_main = {m for m, uri in where.items() if f"@{NODE_IP}:{main_port}" in uri}
        assert on_main == leavers.joined() and on_node == {"n1"}, where
        # Over TCP: the main server is full, so the 302 names the node's TCP node port.
        tcp_port = int(
            next(p["nodePort"] for p in node_svc["spec"]["ports"] if p["protocol"] == "TCP")
        )
        entry_tcp = int(
            next(p["nodePort"] for p in entry["spec"]["ports"] if p["protocol"] == "TCP")
        )
        tcp = TcpMember()
        try:
            first = tcp.invite(NODE_IP, entry_tcp, f"sip:conf@{NODE_IP}:{entry_tcp}", 1)
            assert first.startswith("SIP/2.0 302"), first
            target = f"sip:conf-expose-node-1@{NODE_IP}:{tcp_port};transport=tcp"
            assert f"Contact: <{target}>" in first, first
            ok = tcp.invite(NODE_IP, tcp_port, target, 2)
            assert ok.startswith("SIP/2.0 200"), ok
            assert f"@{NODE_IP}:{tcp_port};transport=tcp>" in ok, ok  # the node's Contact
            tcp.ack(ok, 2)
            # One group message, sent by a UDP member joining through the entry point.
            body = send_group_message(NODE_IP, exposed, "s", port=entry_port)
            wait_for(
                "the group message at every UDP member",
                lambda: leavers.received(body) | stayer.received(body) == set(where),
                timeout=30,
            )
            got = tcp.wait_for_body(body)
            assert body.encode() in got, got
            assert f"Via: SIP/2.0/TCP {NODE_IP}:{tcp_port};".encode() in got, got

            # Make room on the main server, then stop the node: its graceful exit
            # REFERs its members to the main server's advertised address.
            send_group_message(NODE_IP, exposed, "leave-cmd", port=entry_port)
            wait_for("the leavers gone", lambda: leavers.left() == on_main, timeout=30)
            wait_for(
                "the main server empty in the status",
                lambda: any(
                    sh["server"] == "expose-main" and sh["members"] == 0
                    for sh in status(real_cluster, NS, "conf").get("shards") or []
                ),
                timeout=30,
            )
            real_cluster.kubectl("delete", "pod", "expose-node-1", "-n", NS, "--wait=false")
            wait_for("the UDP member moved", lambda: stayer.moved() == {"n1"}, timeout=60)
            main_uri = f"sip:conf-expose-main@{NODE_IP}:{main_port}"
            assert stayer.locations()["n1"] == NODE_IP
            moved_to = [p[3] for p in stayer.lines("MOVED")]
            assert moved_to and moved_to[-1].startswith(main_uri), moved_to
            refer = tcp.wait_for_body("Refer-To:", timeout=30)
            assert f"Refer-To: <{main_uri};transport=tcp".encode() in refer, refer
        finally:
            tcp.close()
    finally:
        leavers.stop()
        stayer.stop()
