"""Certificates and keys of the local control plane, made with the openssl CLI.

The `cryptography` package is not a dependency of sipfleet, while openssl is
on every machine that builds Kubernetes; EC P-256 keys keep generation fast.
Everything is created once per state dir and reused by later `up` calls.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_DAYS = "3650"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
SERVER_SANS = (
    "IP:127.0.0.1",
    # The real node: its IP (API server, kubelet) and the `kubernetes` Service.
    "IP:10.245.0.1",
    "IP:10.96.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"


class PKIError(RuntimeError):
    """openssl is missing or failed."""


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class PKI:
    """Paths of every credential under ``<state-dir>/pki``."""

    dir: Path
    node_name: str

    @property
    def ca(self) -> KeyPair:
        return KeyPair(self.dir / "ca.crt", self.dir / "ca.key")

    @property
    def serving(self) -> KeyPair:
        return KeyPair(self.dir / "serving.crt", self.dir / "serving.key")

    @property
    def admin(self) -> KeyPair:
        return KeyPair(self.dir / "admin.crt", self.dir / "admin.key")

    @property
    def controller_manager(self) -> KeyPair:
        return KeyPair(self.dir / "controller-manager.crt", self.dir / "controller-manager.key")

    @property
    def kubelet(self) -> KeyPair:
        return KeyPair(self.dir / "kubelet.crt", self.dir / "kubelet.key")

    @property
    def scheduler(self) -> KeyPair:
        return KeyPair(self.dir / "scheduler.crt", self.dir / "scheduler.key")

    @property
    def kube_proxy(self) -> KeyPair:
        return KeyPair(self.dir / "kube-proxy.crt", self.dir / "kube-proxy.key")

    @property
    def apiserver_kubelet_client(self) -> KeyPair:
        """The API server's identity towards the kubelet (logs proxy)."""
        return KeyPair(
            self.dir / "apiserver-kubelet-client.crt", self.dir / "apiserver-kubelet-client.key"
        )

    @property
    def service_account_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.dir / "sa.pub"


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise PKIError("openssl is not installed; install it (apt-get install openssl)")
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PKIError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _has_sans(cert: Path, sans: tuple[str, ...]) -> bool:
    """True if `cert` names every one of `sans` (a cert from before they were added does not)."""
    result = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=False,
    )
    text = result.stdout.replace("IP Address:", "IP:")
    return all(san in text for san in sans)


def _leaf(pki: PKI, pair: KeyPair, subject: str, usage: str, sans: tuple[str, ...] = ()) -> None:
    if pair.cert.is_file() and pair.key.is_file() and (not sans or _has_sans(pair.cert, sans)):
        return
    extensions = [
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
        "-addext", f"extendedKeyUsage={usage}",
    ]  # fmt: skip
    if sans:
        extensions += ["-addext", "subjectAltName=" + ",".join(sans)]
    _openssl(
        "req", "-x509", "-new", *_EC, "-days", _DAYS, "-subj", subject,
        "-CA", str(pki.ca.cert), "-CAkey", str(pki.ca.key),
        "-keyout", str(pair.key), "-out", str(pair.cert), *extensions,
    )  # fmt: skip


def ensure(pki_dir: Path, node_name: str) -> PKI:
    """Create whatever credential is missing under `pki_dir` and return the paths."""
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = PKI(pki_dir, node_name)
    if not (pki.ca.cert.is_file() and pki.ca.key.is_file()):
        _openssl(
            "req", "-x509", "-new", *_EC, "-days", _DAYS, "-subj", "/CN=sipfleet-local-ca",
            "-keyout", str(pki.ca.key), "-out", str(pki.ca.cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip
    _leaf(pki, pki.serving, "/CN=kube-apiserver", "serverAuth", SERVER_SANS)
    _leaf(pki, pki.admin, "/O=system:masters/CN=sipfleet-admin", "clientAuth")
    _leaf(pki, pki.controller_manager, "/CN=system:kube-controller-manager", "clientAuth")
    _leaf(pki, pki.kubelet, f"/O=system:nodes/CN=system:node:{node_name}", "clientAuth")
    _leaf(pki, pki.scheduler, "/CN=system:kube-scheduler", "clientAuth")
    _leaf(pki, pki.kube_proxy, "/CN=system:kube-proxy", "clientAuth")
    _leaf(pki, pki.apiserver_kubelet_client, f"/CN={APISERVER_KUBELET_CLIENT}", "clientAuth")
    if not pki.service_account_key.is_file():
        _openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-out", str(pki.service_account_key),
        )  # fmt: skip
    if not pki.service_account_pub.is_file():
        _openssl("pkey", "-in", str(pki.service_account_key), "-pubout", "-out",
                 str(pki.service_account_pub))  # fmt: skip
    return pki
