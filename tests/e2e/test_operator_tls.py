"""The operator turns SipFleet.spec.tls and spec.websocket into servers that speak TLS and
wss with the certificate of a kubernetes.io/tls Secret (as cert-manager writes it):
the main server presents that certificate on its TLS port and its wss port
(docs/security.md, "Encrypt the signalling")."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from operator_harness import Operator, apply, fleet, main_ip, operator_namespace
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


def test_fleet_servers_speak_tls_and_wss_with_the_secret_certificate(
    cluster: Cluster, tmp_path: Path
) -> None:
    ca = TestCa(tmp_path / "ca")
    crt, key = ca.issue("server", ("127.0.0.1",))
    op = Operator(operator_namespace(cluster, NS, tmp_path), NS, tmp_path / "operator.log")
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
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
