"""Test certificates made at test time with the openssl CLI (no private key is committed).

`TestCa(dir)` is a throw-away CA; `ca.issue(name, ips)` writes `<name>/tls.crt` and
`<name>/tls.key` (the names cert-manager gives a Secret's keys) for a certificate
whose subjectAltName lists the IP addresses, signed by the CA.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def _run(*args: str) -> None:
    done = subprocess.run([OPENSSL, *args], capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed: {done.stderr.decode()}")


@dataclass
class TestCa:
    __test__ = False  # not a test class
    """A CA for one test (EC P-256 keys: fast to make)."""

    dir: Path

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self.dir / "ca.crt", self.dir / "ca.key"
        _run(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert), "-days", "2",
            "-subj", "/CN=sipfleet test CA",
        )  # fmt: skip
        self._serial = 0

    def issue(self, name: str, ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path]:
        """(tls.crt, tls.key) under `dir/name/`, for the IP addresses `ips`."""
        self._serial += 1
        out = self.dir / name
        out.mkdir(exist_ok=True)
        crt, key, csr, ext = (out / n for n in ("tls.crt", "tls.key", "tls.csr", "ext.cnf"))
        ext.write_text("subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips) + "\n")
        _run(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
        )  # fmt: skip
        _run(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-set_serial", str(1000 + self._serial), "-days", "2", "-out", str(crt),
            "-extfile", str(ext),
        )  # fmt: skip
        return crt, key


def client_context(ca: TestCa) -> ssl.SSLContext:
    """A client context that trusts only the test CA and checks the IP address SAN."""
    return ssl.create_default_context(cafile=str(ca.cert))


def served_certificate(host: str, port: int, ca: TestCa) -> bytes:
    """The DER certificate a TLS server at host:port presents to a new connection
    (verified against the test CA)."""
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        client_context(ca).wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def pem_to_der(path: Path) -> bytes:
    """The DER form of the first certificate in a PEM file."""
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def sip_and_tls_ports(host: str) -> tuple[int, int]:
    """(p, p + 1): p free for UDP and TCP, p + 1 free for TCP, on `host`; every server of
    a fleet has its TLS port as far above its SIP port (docs/transport.md)."""
    for _ in range(100):
        with (
            socket.socket() as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket() as tls,
        ):
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind((host, port))
                tls.bind((host, port + 1))
            except OSError:
                continue
            return port, port + 1
    raise RuntimeError(f"no free SIP and TLS ports on {host}")
