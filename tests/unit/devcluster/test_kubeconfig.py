from pathlib import Path

import yaml
from sipfleet.devcluster.kubeconfig import (
    read_cert_kubeconfig,
    write_cert_kubeconfig,
    write_token_kubeconfig,
)


def test_cert_kubeconfig_round_trip(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "c.pem", "k.pem"))
    ca.write_bytes(b"CA")
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    path = tmp_path / "kubeconfig"
    write_cert_kubeconfig(path, "https://127.0.0.1:6443", ca, cert, key, "admin")
    cfg = read_cert_kubeconfig(path)
    assert (cfg.server, cfg.ca_pem, cfg.cert_pem, cfg.key_pem) == (
        "https://127.0.0.1:6443",
        b"CA",
        b"CERT",
        b"KEY",
    )
    assert path.stat().st_mode & 0o777 == 0o600


def test_token_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    write_token_kubeconfig(path, "https://127.0.0.1:1", b"CA", "tok", "system:serviceaccount:a:b")
    doc = yaml.safe_load(path.read_text())
    assert doc["users"][0] == {"name": "system:serviceaccount:a:b", "user": {"token": "tok"}}
    assert doc["current-context"] == doc["contexts"][0]["name"]
