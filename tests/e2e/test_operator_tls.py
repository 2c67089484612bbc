"""The operator turns SipFleet.spec.tls and spec.websocket into servers that speak TLS and
wss with the certificate of a kubernetes.io/tls Secret (as cert-manager writes it):
the main server presents that certificate on its TLS port and its wss port
(docs/security.md, "Encrypt the signalling")."""

from __future__ import annotations

import secrets
import socket
import ssl
from pathlib import Path

from operator_harness import Operator, apply, fleet, main_ip, operator_namespace, wait_for
from sipfleet.devcluster.cluster import Cluster
from tls_certs import TestCa, pem_to_der

NS = "op-tls"


def served(host: str, port: int, ca: TestCa) -> bytes:
    """The certificate a new TLS connection to host:port gets, verified against the
    test CA (the address is not checked: the Pod IP is not known when it is issued)."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.check_hostname = False
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def open_tls(host: str, port: int, ca: TestCa) -> ssl.SSLSocket:
    """A TLS connection verified against the test CA (address not checked)."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.check_hostname = False
    return context.wrap_socket(socket.create_connection((host, port), timeout=5))


def options(conn: ssl.SSLSocket, host: str) -> bytes:
    """Send an OPTIONS on `conn`; the status line of its answer."""
    here, port = conn.getsockname()[:2]
    conn.sendall(
        (
            f"OPTIONS sip:{host}:5061;transport=tls SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS {here}:{port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
            f"From: <sip:probe@example.com>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{host}>\r\nCall-ID: {secrets.token_hex(8)}\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    return conn.recv(65535).split(b"\r\n", 1)[0]


def test_fleet_servers_speak_tls_and_wss_with_the_secret_certificate(
    cluster: Cluster, tmp_path: Path
) -> None:
    ca = TestCa(tmp_path / "ca")
    crt, key = ca.issue("server", ("127.0.0.1",))
    operator_namespace(cluster, NS)
    op = Operator(cluster, NS, tmp_path / "operator.log")
    cluster.kubectl(
        "create", "secret", "tls", "sip-tls", "-n", NS, "--cert", str(crt), "--key", str(key)
    )
    op.start()
    try:
        apply(
            cluster,
            NS,
            fleet("sec", minNodes=0, maxNodes=1, tls={"secretName": "sip-tls"},
                  websocket={"wssPort": 8443}),
        )  # fmt: skip
        ip = main_ip(cluster, NS, "sec")
        assert served(ip, 5061, ca) == pem_to_der(crt)
        assert served(ip, 8443, ca) == pem_to_der(crt)
        service = cluster.kubectl("get", "service", "sec-sip", "-n", NS, "-o", "json").stdout
        assert '"name": "sip-tls"' in service and '"name": "sip-wss"' in service

        # Rotation through the Secret, as cert-manager renews it: the kubelet swaps the
        # mounted files, the server takes the new pair for new connections, and a
        # connection opened before keeps working. It sends its first message at once:
        # a connection silent for 10 s after it opens is closed by design (TcpLimits.
        # message_deadline), and the kubelet may take a minute to swap the files.
        before = open_tls(ip, 5061, ca)
        assert options(before, ip).startswith(b"SIP/2.0 200")
        crt2, key2 = ca.issue("server-renewed", ("127.0.0.1",))
        renewed = cluster.kubectl(
            "create", "secret", "tls", "sip-tls", "-n", NS, "--cert", str(crt2),
            "--key", str(key2), "--dry-run=client", "-o", "yaml",
        ).stdout  # fmt: skip
        cluster.kubectl("apply", "-n", NS, "-f", "-", input=renewed)
        wait_for(
            "the renewed certificate on new connections",
            lambda: served(ip, 5061, ca) == pem_to_der(crt2) or None,
            timeout=180,
        )
        assert options(before, ip).startswith(b"SIP/2.0 200")  # the old connection lives
        before.close()
        pod = cluster.kubectl("get", "pod", "sec-main", "-n", NS, "-o", "json").stdout
        assert '"restartCount": 0' in pod  # no restart: the file changed under the server
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
