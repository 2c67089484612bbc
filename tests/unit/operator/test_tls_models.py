"""TLS and WebSocket in the SipFleet CRD (spec.tls, spec.websocket) and what they make of
the server Pods and the entry Service (docs/transport.md)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sipfleet.operator import exposure, pods
from sipfleet.operator.models import SipFleetSpec

FLEET: dict[str, Any] = {
    "apiVersion": "sipfleet.io/v1alpha1",
    "kind": "SipFleet",
    "metadata": {"name": "small", "namespace": "demo", "uid": "u-1"},
}
MAIN = {"domain": "example.com"}


def _pod(spec: SipFleetSpec, role: pods.Role = "main") -> dict[str, Any]:
    return pods.server_pod(FLEET, "p", role, pods.server_pod_spec("small", spec, role))


def test_secure_defaults_no_tls_no_websocket() -> None:
    spec = SipFleetSpec.model_validate({"mainServer": MAIN})
    assert spec.tls.secret_name is None and spec.tls.port == 5061
    assert spec.websocket.ws_port == 0 and spec.websocket.wss_port == 0
    container = _pod(spec)["spec"]["containers"][0]
    assert [p["name"] for p in container["ports"]] == ["sip-udp", "sip-tcp", "admin"]
    assert not {e["name"] for e in container["env"]} & {
        "SIPFLEET_TLS_CERT_FILE",
        "SIPFLEET_WS_PORT",
        "SIPFLEET_WSS_PORT",
    }


def test_tls_secret_is_mounted_into_every_server_with_its_ports() -> None:
    spec = SipFleetSpec.model_validate(
        {
            "mainServer": MAIN,
            "tls": {"secretName": "sip-cert", "caSecretName": "member-cas"},
            "websocket": {"wssPort": 8443},
        }
    )
    for role in ("main", "node"):
        pod = _pod(spec, role)  # type: ignore[arg-type]
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SIPFLEET_TLS_CERT_FILE"] == "/etc/sipfleet/tls/tls.crt"
        assert env["SIPFLEET_TLS_KEY_FILE"] == "/etc/sipfleet/tls/tls.key"
        assert env["SIPFLEET_TLS_PORT"] == "5061"
        assert env["SIPFLEET_TLS_CA_FILE"] == "/etc/sipfleet/ca/ca.crt"
        assert env["SIPFLEET_WSS_PORT"] == "8443"
        assert "SIPFLEET_WS_PORT" not in env
        ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]}
        assert ports["sip-tls"] == (5061, "TCP") and ports["sip-wss"] == (8443, "TCP")
        volumes = {
            v["name"]: v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v
        }
        assert volumes["tls"] == "sip-cert" and volumes["tls-ca"] == "member-cas"
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/sipfleet/tls", "readOnly": True}


def test_entry_service_carries_tls_and_websocket() -> None:
    spec = SipFleetSpec.model_validate(
        {"mainServer": MAIN, "tls": {"secretName": "c"}, "websocket": {"wsPort": 8080 + 8}}
    )
    service = exposure.entry_service(FLEET, spec)
    ports = {p["name"]: (p["port"], p["protocol"]) for p in service["spec"]["ports"]}
    assert ports == {
        "sip-udp": (5060, "UDP"),
        "sip-tcp": (5060, "TCP"),
        "sip-tls": (5061, "TCP"),
        "sip-ws": (8088, "TCP"),
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"websocket": {"wssPort": 8443}}, "wssPort needs tls.secretName"),
        (
            {"tls": {"secretName": "c"}, "nodeTemplate": {"sipPort": 5070}},
            "sipPort must be equal",
        ),
        ({"tls": {"secretName": "Not_A_Name"}}, "tls.secretName"),
    ],
)
def test_inconsistent_tls_settings_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SipFleetSpec.model_validate({"mainServer": MAIN, **body})


def test_server_to_server_tls_trusts_the_secret_ca_unless_told_otherwise() -> None:
    base = {"mainServer": MAIN, "tls": {"secretName": "c", "serverToServer": True}}
    env = {
        e["name"]: e.get("value")
        for e in _pod(SipFleetSpec.model_validate(base))["spec"]["containers"][0]["env"]
    }
    assert env["SIPFLEET_S2S_TRANSPORT"] == "tls"
    assert env["SIPFLEET_TLS_CA_FILE"] == "/etc/sipfleet/tls/ca.crt"  # cert-manager's ca.crt
    base["tls"]["caSecretName"] = "fleet-ca"  # type: ignore[index]
    pod = _pod(SipFleetSpec.model_validate(base))
    cas = [e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "SIPFLEET_TLS_CA_FILE"]
    assert cas == [{"name": "SIPFLEET_TLS_CA_FILE", "value": "/etc/sipfleet/ca/ca.crt"}]
