"""Write and read the small kubeconfig files of the local cluster."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CLUSTER = "sipfleet-local"


def _document(server: str, ca_pem: bytes, user: dict[str, str], user_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": CLUSTER, "context": {"cluster": CLUSTER, "user": user_name}}],
        "current-context": CLUSTER,
    }


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` in one rename so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    # Created with its final mode: credentials are never readable by others.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_cert_kubeconfig(
    path: Path, server: str, ca: Path, cert: Path, key: Path, user_name: str
) -> None:
    """A kubeconfig that authenticates with a client certificate (embedded)."""
    user = {
        "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
    }
    write_atomic(path, yaml.safe_dump(_document(server, ca.read_bytes(), user, user_name)))


def write_token_kubeconfig(path: Path, server: str, ca_pem: bytes, token: str, user: str) -> None:
    """A kubeconfig that authenticates with a bearer token (a pod's ServiceAccount)."""
    write_atomic(path, yaml.safe_dump(_document(server, ca_pem, {"token": token}, user)))


@dataclass(frozen=True)
class ClientConfig:
    """What an API client needs from a certificate kubeconfig written above."""

    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def read_cert_kubeconfig(path: Path) -> ClientConfig:
    doc = yaml.safe_load(path.read_text())
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]
    return ClientConfig(
        server=cluster["server"],
        ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
        cert_pem=base64.b64decode(user["client-certificate-data"]),
        key_pem=base64.b64decode(user["client-key-data"]),
    )
