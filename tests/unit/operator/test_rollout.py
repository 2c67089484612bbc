"""Rolling updates: the node template digest, outdated Pods and the fleet's progress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sipfleet.operator import pods, rollout
from sipfleet.operator.models import SipFleetSpec
from sipfleet.operator.status import fleet_status

FLEET: dict[str, Any] = {
    "apiVersion": "sipfleet.io/v1alpha1",
    "kind": "SipFleet",
    "metadata": {"name": "small", "namespace": "demo", "uid": "u-1"},
}


def spec(**fields: Any) -> SipFleetSpec:
    return SipFleetSpec.model_validate({"mainServer": {"domain": "example.com"}, **fields})


def test_the_digest_follows_the_node_template_only() -> None:
    base = rollout.node_template_hash(FLEET, spec())
    assert len(base) == 16 and base == rollout.node_template_hash(FLEET, spec())
    env = spec(nodeTemplate={"env": [{"name": "X", "value": "1"}]})
    image = spec(nodeTemplate={"image": "sipfleet/node:2"})
    assert (
        len(
            {base, rollout.node_template_hash(FLEET, env), rollout.node_template_hash(FLEET, image)}
        )
        == 3
    )
    # Scaling limits are no part of a Pod: changing them rolls nothing.
    assert rollout.node_template_hash(FLEET, spec(maxNodes=3, minNodes=1)) == base


def test_outdated_means_built_from_another_recorded_template() -> None:
    built = {"metadata": {"annotations": {rollout.TEMPLATE_HASH: "aaaa"}}}
    assert rollout.outdated(built, "bbbb")
    assert not rollout.outdated(built, "aaaa")
    assert not rollout.outdated({"metadata": {}}, "bbbb")  # made before rolling updates


def node(name: str, template: str) -> dict[str, Any]:
    body = pods.server_pod(FLEET, name, "node", pods.server_pod_spec("small", spec(), "node"), 1)
    body["metadata"]["annotations"] = {rollout.TEMPLATE_HASH: template}
    body["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    return body


def test_fleet_status_shows_the_rollout_progress() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    nodes = [node("small-node-1", "new"), node("small-node-2", "old"), node("small-node-3", "old")]
    s = fleet_status(None, nodes, {}, 2, None, now, "new")
    assert (s["nodeCount"], s["readyNodes"], s["updatedNodes"]) == (3, 3, 1)
    rolling = next(c for c in s["conditions"] if c["type"] == "Rolling")
    assert (rolling["status"], rolling["reason"]) == ("True", "RollingUpdate")
    assert "1/3 nodes updated" in rolling["message"] and "small-node-2" in rolling["message"]
    done = fleet_status(None, [node("small-node-1", "new")], {}, 2, s, now, "new")
    rolled = next(c for c in done["conditions"] if c["type"] == "Rolling")
    assert (rolled["status"], rolled["reason"], done["updatedNodes"]) == (
        "False",
        "AllNodesUpdated",
        1,
    )


def main_pod(template: str | None) -> dict[str, Any]:
    body = pods.server_pod(
        FLEET, "small-main", "main", pods.server_pod_spec("small", spec(), "main")
    )
    if template is not None:
        body["metadata"]["annotations"] = {rollout.TEMPLATE_HASH: template}
    body["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    return body


def test_the_main_server_has_its_own_digest() -> None:
    base = rollout.main_template_hash(FLEET, spec())
    assert base != rollout.node_template_hash(FLEET, spec())
    image = spec(nodeTemplate={"image": "sipfleet/node:2"})
    assert rollout.main_template_hash(FLEET, image) != base
    # Node resources are no part of the main server's Pod: they roll nodes only.
    sized = spec(nodeTemplate={"resources": {"limits": {"cpu": "2"}}})
    assert rollout.main_template_hash(FLEET, sized) == base
    assert rollout.node_template_hash(FLEET, sized) != rollout.node_template_hash(FLEET, spec())


def test_fleet_status_counts_the_main_server_in_the_rollout() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    nodes = [node("small-node-1", "new")]
    s = fleet_status(main_pod("old-main"), nodes, {}, 2, None, now, "new", main_template="new-main")
    rolling = next(c for c in s["conditions"] if c["type"] == "Rolling")
    assert (rolling["status"], rolling["reason"]) == ("True", "MainServerRolling")
    assert (s["updatedNodes"], s["mainServer"]["updated"]) == (1, False)
    done = fleet_status(main_pod("new-main"), nodes, {}, 2, s, now, "new", main_template="new-main")
    rolled = next(c for c in done["conditions"] if c["type"] == "Rolling")
    assert (rolled["status"], done["mainServer"]["updated"]) == ("False", True)
    # Nodes first: while one is old, the condition says RollingUpdate.
    both = fleet_status(
        main_pod("old-main"),
        [node("small-node-1", "old")],
        {},
        2,
        None,
        now,
        "new",
        main_template="new-main",
    )
    assert (
        next(c for c in both["conditions"] if c["type"] == "Rolling")["reason"] == "RollingUpdate"
    )
    # spec.rollout.mainServer false: the old main server is reported, not rolled.
    kept = fleet_status(
        main_pod("old-main"),
        nodes,
        {},
        2,
        None,
        now,
        "new",
        main_template="new-main",
        roll_main=False,
    )
    assert next(c for c in kept["conditions"] if c["type"] == "Rolling")["status"] == "False"
    assert kept["mainServer"]["updated"] is False
    # Gone (between the old Pod and its replacement): no claim either way.
    gap = fleet_status(None, nodes, {}, 2, None, now, "new", main_template="new-main")
    assert "updated" not in gap["mainServer"]
