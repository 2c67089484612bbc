"""Member access in the CRDs: SipConference.spec.access and the fleet's credentials Secret."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sipfleet.operator import pods
from sipfleet.operator.models import AccessSpec, SipConferenceSpec, SipFleetSpec

FLEET: dict[str, Any] = {
    "apiVersion": "sipfleet.io/v1alpha1",
    "kind": "SipFleet",
    "metadata": {"name": "small", "namespace": "demo", "uid": "u-1"},
}


def test_new_conferences_are_authenticated_with_sha256() -> None:
    spec = SipConferenceSpec.model_validate({"uri": "sip:c@example.com", "fleetRef": {"name": "f"}})
    assert spec.access == AccessSpec(policy="authenticated", allow=[], algorithms=["SHA-256"])


@pytest.mark.parametrize(
    "access",
    [
        {"policy": "closed"},
        {"algorithms": []},
        {"algorithms": ["MD5", "SHA-256"]},
        {"algorithms": ["SHA-1"]},
        {"allow": ["alice@example.com"]},
    ],
)
def test_bad_access_is_refused(access: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AccessSpec.model_validate(access)


def test_allowlist_and_md5() -> None:
    access = AccessSpec.model_validate(
        {
            "policy": "allowlist",
            "allow": ["sip:alice@example.com"],
            "algorithms": ["SHA-256", "MD5"],
        }
    )
    assert access.to_k8s()["algorithms"] == ["SHA-256", "MD5"]


def test_credentials_secret_is_mounted_into_every_server() -> None:
    spec = SipFleetSpec.model_validate(
        {"mainServer": {"domain": "example.com"}, "memberCredentialsSecret": "members"}
    )
    for role in ("main", "node"):
        pod = pods.server_pod(FLEET, "p", role, pods.server_pod_spec("small", spec, role))
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SIPFLEET_CREDENTIALS_FILE"] == "/etc/sipfleet/members/credentials.yaml"
        mount = next(m for m in container["volumeMounts"] if m["name"] == "member-credentials")
        assert mount == {
            "name": "member-credentials",
            "mountPath": "/etc/sipfleet/members",
            "readOnly": True,
        }
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "member-credentials")
        assert volume["secret"] == {"secretName": "members"}


def test_no_credentials_secret_no_mount() -> None:
    spec = SipFleetSpec.model_validate({"mainServer": {"domain": "example.com"}})
    pod = pods.server_pod(FLEET, "p", "main", pods.server_pod_spec("small", spec, "main"))
    env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert "SIPFLEET_CREDENTIALS_FILE" not in env
    assert all(v["name"] != "member-credentials" for v in pod["spec"]["volumes"])
