"""The SipFleet and SipConference models: defaults, JSON names, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sipfleet.operator.models import (
    CONFERENCE,
    FLEET,
    SipConferenceSpec,
    SipConferenceStatus,
    SipFleetSpec,
)
from sipfleet.operator.planner import PlanSpec

EXAMPLES = Path(__file__).parents[3] / "examples"


def conference(**spec: Any) -> dict[str, Any]:
    return {"uri": "sip:conf3@example.com", "fleetRef": {"name": "small"}, **spec}


def test_conference_defaults() -> None:
    spec = SipConferenceSpec.model_validate(conference())
    assert spec.scaling.target_load == 0.8
    assert spec.scaling.high_watermark == 1.0
    assert spec.scaling.scale_up_stabilization_seconds == 0
    assert spec.scaling.scale_down_stabilization_seconds == 60
    assert spec.scaling.cooldown_seconds == 10
    assert spec.scaling.max_nodes_per_step == 2
    assert spec.scaling.interval_seconds == 2
    assert spec.transfer.mode == "refer"
    assert spec.transfer.members_per_second == 50
    assert spec.capacity.members_per_server is None
    assert spec.sender_display is None  # each server's --sender-display


def test_fleet_defaults() -> None:
    fleet = SipFleetSpec.model_validate({"mainServer": {"domain": "example.com"}})
    assert (fleet.main_server.sip_port, fleet.main_server.admin_port) == (5060, 8080)
    assert fleet.node_template.image == "sipfleet/node:0.1.0"
    assert (fleet.min_nodes, fleet.max_nodes, fleet.members_per_node) == (0, 10, 100)
    assert fleet.tree_fanout == 8
    assert fleet.metrics.prometheus_url is None
    assert fleet.metrics.stale_after_seconds == 30
    assert fleet.admin_token_secret is None


def test_json_is_camel_case_and_round_trips() -> None:
    raw = conference(scaling={"targetLoad": 0.5, "scaleDownStabilizationSeconds": 5})
    spec = SipConferenceSpec.model_validate(raw)
    out = spec.to_k8s()
    assert out["fleetRef"] == {"name": "small"}
    assert out["scaling"]["targetLoad"] == 0.5
    assert out["scaling"]["scaleDownStabilizationSeconds"] == 5
    assert "members_per_server" not in str(out)
    assert SipConferenceSpec.model_validate(out) == spec


def test_sender_display_is_per_conference() -> None:
    spec = SipConferenceSpec.model_validate(conference(senderDisplay="display-name"))
    assert spec.sender_display == "display-name"
    assert spec.to_k8s()["senderDisplay"] == "display-name"


def test_members_per_server_falls_back_to_the_fleet() -> None:
    fleet = SipFleetSpec.model_validate({"mainServer": {"domain": "x.org"}, "membersPerNode": 7})
    assert SipConferenceSpec.model_validate(conference()).members_per_server(fleet) == 7
    own = SipConferenceSpec.model_validate(conference(capacity={"membersPerServer": 3}))
    assert own.members_per_server(fleet) == 3


def test_plan_spec_joins_conference_and_fleet() -> None:
    fleet = SipFleetSpec.model_validate(
        {"mainServer": {"domain": "x.org"}, "minNodes": 1, "maxNodes": 4, "membersPerNode": 9}
    )
    conf = SipConferenceSpec.model_validate(conference(capacity={"maxMembers": 50}))
    spec = PlanSpec.from_resources(conf, fleet, other_nodes=3)
    assert (spec.group, spec.members_per_server, spec.max_members) == (conf.uri, 9, 50)
    assert (spec.min_nodes, spec.max_nodes, spec.node_budget) == (1, 4, 1)


@pytest.mark.parametrize(
    "uri",
    [
        "sip:conf3@example.com",
        "sips:keynote@events.example.com",
        "sip:room-1.a_b~c@example.com:5070",
        "sip:%61lice@10.0.0.1",
    ],
)
def test_valid_uris(uri: str) -> None:
    assert SipConferenceSpec.model_validate(conference(uri=uri)).uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "conf3@example.com",
        "tel:+123",
        "http://conf3@example.com",
        "sip:example.com",  # no user part: not a group
        "sip:conf3@",
        "sip:conf 3@example.com",
        "sip:conf3@example.com;transport=tcp",
        "SIP:conf3@example.com",
    ],
)
def test_bad_uri_is_rejected_with_a_hint(uri: str) -> None:
    with pytest.raises(ValidationError, match="must be a sip: or sips: URI like"):
        SipConferenceSpec.model_validate(conference(uri=uri))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"mainServer": {"domain": "x.org"}, "minNodes": 5, "maxNodes": 2},
            r"minNodes \(5\) must not exceed maxNodes \(2\)",
        ),
        (
            {"mainServer": {"domain": "x.org", "sipPort": 8080}},
            "sipPort and adminPort must differ",
        ),
        ({"mainServer": {"domain": "x.org"}, "maxNodes": -1}, "greater than or equal to 0"),
        ({"mainServer": {"domain": "Not A Domain"}}, "should match pattern"),
        ({"mainServer": {"domain": "x.org"}, "metrics": {"prometheusUrl": "ftp://x"}}, "pattern"),
    ],
)
def test_bad_fleet_is_rejected(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SipFleetSpec.model_validate(raw)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"scaling": {"targetLoad": 0.9, "highWatermark": 0.8}}, "must not exceed highWatermark"),
        ({"scaling": {"targetLoad": 0}}, "greater than 0"),
        ({"scaling": {"intervalSeconds": 61}}, "less than or equal to 60"),
        ({"scaling": {"cooldownSeconds": -1}}, "greater than or equal to 0"),
        ({"transfer": {"mode": "teleport"}}, "'redirect-only', 'refer' or 'refer-to-server'"),
        ({"capacity": {"membersPerServer": 0}}, "greater than or equal to 1"),
        ({"senderDisplay": "loud"}, "'auto', 'cpim', 'display-name' or 'prefix'"),
    ],
)
def test_bad_conference_is_rejected(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SipConferenceSpec.model_validate(conference(**extra))


def test_status_parses_what_the_operator_writes() -> None:
    status = SipConferenceStatus.model_validate(
        {
            "observedGeneration": 3,
            "phase": "Scaling",
            "members": 30,
            "servers": 2,
            "shards": [{"server": "main", "uri": "sip:c@m", "members": 16, "state": "active"}],
            "lastDecision": {"kind": "scale-out", "reason": "r", "time": "2026-01-01T00:00:00Z"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
        }
    )
    assert status.shards[0].members == 16
    assert status.to_k8s()["lastDecision"]["kind"] == "scale-out"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    kinds = {FLEET.kind: FLEET.spec, CONFERENCE.kind: CONFERENCE.spec}
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert {d["kind"] for d in docs} == set(kinds)
    for doc in docs:
        assert doc["apiVersion"] == "sipfleet.io/v1alpha1"
        kinds[doc["kind"]].model_validate(doc["spec"])


def test_small_example_has_20_members_per_server() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "small-conference.yaml").read_text()))
    conf = next(d for d in docs if d["kind"] == "SipConference")
    assert conf["spec"]["capacity"]["membersPerServer"] == 20
