"""Build the ``status`` of SipConference and SipFleet objects (pure).

Follows the API conventions: ``observedGeneration``, conditions Ready,
Scaling and Degraded with CamelCase reasons, and the last non-trivial
decision with its reason. The result is validated through the pydantic
status models, so it always fits the CRD schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sipfleet.operator import exposure, rollout
from sipfleet.operator import pods as podlib
from sipfleet.operator.conditions import Condition, merge_conditions, timestamp
from sipfleet.operator.models import SipConferenceStatus, SipFleetStatus
from sipfleet.operator.planner import Decision, Limit, Observations

Status = dict[str, Any]


def status_patch(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Status:
    """Only the fields that differ, so a steady object costs no API write per pass."""
    current = current or {}
    return {k: v for k, v in new.items() if current.get(k) != v}


def _scaling(decision: Decision) -> Condition:
    if decision.create_nodes or decision.pending_nodes:
        reason = "ScalingOut"
    elif decision.terminating_nodes:
        reason = "ReplacingTerminating"
    elif decision.drain or decision.draining_nodes:
        reason = "ScalingIn"
    elif decision.transfers:
        reason = "Transferring"
    else:
        return Condition("Scaling", "False", "Stable", decision.reason)
    return Condition("Scaling", "True", reason, decision.reason)


def _degraded(decision: Decision, failures: Sequence[str]) -> Condition:
    problems = [*decision.degraded, *failures]
    if not problems:
        return Condition("Degraded", "False", "AsExpected", "")
    if Limit.METRICS_STALE in decision.limited or any("metrics" in p for p in decision.degraded):
        reason = "MetricsStale"
    elif any("main server" in p for p in decision.degraded):
        reason = "MainServerUnavailable"
    elif decision.degraded:
        reason = "PodFailed"
    else:
        reason = "ActionFailed"
    notes = [n for n in decision.notes if n.startswith("no scale-in")]
    return Condition("Degraded", "True", reason, "; ".join([*problems, *notes]))


def _ready(decision: Decision) -> Condition:
    if decision.routes:
        return Condition(
            "Ready",
            "True",
            "Serving",
            f"{decision.members} members on {decision.servers} servers",
        )
    return Condition("Ready", "False", "NoServer", "no ready server hosts the group yet")


def conference_conditions(decision: Decision, failures: Sequence[str]) -> list[Condition]:
    return [_ready(decision), _scaling(decision), _degraded(decision, failures)]


def shards(observations: Observations) -> list[dict[str, Any]]:
    """Main first, then nodes by name: where the group lives and how full it is."""
    main = [s for s in observations.servers if s.role == "main"]
    nodes = sorted((s for s in observations.servers if s.role == "node"), key=lambda s: s.name)
    return [
        {
            "server": s.name,
            "uri": s.shard.uri,
            "members": s.members,
            "state": "draining" if s.draining else "active",
        }
        for s in [*main, *nodes]
        if s.shard is not None
    ]


def conference_status(
    decision: Decision,
    observations: Observations,
    generation: int | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
    failures: Sequence[str] = (),
) -> Status:
    """The whole SipConference status after one control-loop pass."""
    previous = previous or {}
    last = previous.get("lastDecision")
    if decision.kind != "steady" or last is None:
        last = {"kind": decision.kind, "reason": decision.reason, "time": timestamp(now)}
    raw = {
        "observedGeneration": generation,
        "phase": "Degraded" if failures and decision.phase == "Running" else decision.phase,
        "conditions": merge_conditions(
            previous.get("conditions"), conference_conditions(decision, failures), now, generation
        ),
        "members": decision.members,
        "servers": decision.servers,
        "shards": shards(observations),
        "lastDecision": last,
    }
    return SipConferenceStatus.model_validate(raw).to_k8s()


def problem_status(
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Status:
    """Status when the loop cannot even plan (bad spec, fleet or token missing)."""
    previous = previous or {}
    conditions = [
        Condition("Ready", "False", reason, message),
        Condition("Scaling", "False", reason, "not planning until this is fixed"),
        Condition("Degraded", "True", reason, message),
    ]
    raw = {
        **{k: v for k, v in previous.items() if k in ("members", "servers", "shards")},
        "observedGeneration": generation,
        "phase": "Degraded" if previous.get("shards") else "Pending",
        "conditions": merge_conditions(previous.get("conditions"), conditions, now, generation),
        "lastDecision": previous.get("lastDecision"),
    }
    return SipConferenceStatus.model_validate(raw).to_k8s()


def fleet_status(
    main_pod: Mapping[str, Any] | None,
    node_pods: Iterable[Mapping[str, Any]],
    members: Mapping[str, int],
    generation: int | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
    template: str | None = None,
    entry_point: str | None = None,
    unplaced: tuple[str, str] | None = None,
    main_template: str | None = None,
    roll_main: bool = True,
) -> Status:
    """The SipFleet status: main server, node Pods and their readiness, the
    address each advertises, and the fleet's entry point.

    ``unplaced`` (reason, message) says the main server found no node in
    HostPort mode (hostports.py): the ``Exposed`` condition is False with it.

    ``template`` is the current node template digest (rollout.py): nodes
    built from another are counted as not updated, and the ``Rolling``
    condition is True until none is left, as a Deployment's progress.
    ``main_template`` is the main server's digest: a main server Pod built
    from another is not updated (``mainServer.updated``
    false) and, when a rollout replaces it (``roll_main``: spec.rollout.mainServer),
    keeps ``Rolling`` True (reason ``MainServerRolling``) once every node is
    updated. A main server Pod not there (the short gap between
    the old one gone and its replacement created) claims nothing.
    """
    node_list = list(node_pods)
    old = [
        p["metadata"]["name"]
        for p in node_list
        if template is not None and rollout.outdated(p, template)
    ]
    nodes = []
    for pod in sorted(node_list, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        nodes.append(
            {
                "name": name,
                "ip": (pod.get("status") or {}).get("podIP"),
                "ready": podlib.pod_ready(pod),
                "advertised": exposure.advertised(pod),
                "draining": (pod["metadata"].get("labels") or {}).get(podlib.LABEL_DRAINING)
                == "true",
                "terminating": podlib.terminating(pod),
                "members": members.get(name, 0),
            }
        )
    main_ready = main_pod is not None and podlib.pod_ready(main_pod)
    main_old = (
        main_pod is not None
        and main_template is not None
        and rollout.outdated(main_pod, main_template)
    )
    pending = [n["name"] for n in nodes if not (n["ready"] or n["terminating"])]
    draining = [n["name"] for n in nodes if n["draining"] or n["terminating"]]
    failed = [
        p["metadata"]["name"]
        for p in [*([main_pod] if main_pod else []), *node_list]
        if (p.get("status") or {}).get("phase") == "Failed"
    ]
    conditions = [
        Condition("Ready", "True", "MainServerReady", "")
        if main_ready
        else Condition("Ready", "False", "MainServerNotReady", "waiting for the main server Pod"),
        Condition("Scaling", "True", "NodesChanging", f"starting {pending}, draining {draining}")
        if pending or draining
        else Condition("Scaling", "False", "Stable", f"{len(nodes)} nodes"),
        Condition("Degraded", "True", "PodFailed", f"failed pods: {', '.join(failed)}")
        if failed
        else Condition("Degraded", "False", "AsExpected", ""),
        Condition(
            "Rolling",
            "True",
            "RollingUpdate",
            f"{len(nodes) - len(old)}/{len(nodes)} nodes updated; old template: {', '.join(old)}",
        )
        if old
        else Condition(
            "Rolling",
            "True",
            "MainServerRolling",
            f"{len(nodes)} nodes updated; the main server is being replaced",
        )
        if main_old and roll_main
        else Condition("Rolling", "False", "AllNodesUpdated", f"{len(nodes)} nodes updated"),
        Condition("Exposed", "False", *unplaced)
        if unplaced
        else Condition("Exposed", "True", "ServersPlaced", ""),
    ]
    raw = {
        "observedGeneration": generation,
        "conditions": merge_conditions(
            (previous or {}).get("conditions"), conditions, now, generation
        ),
        "mainServer": {
            "pod": main_pod["metadata"]["name"] if main_pod else None,
            "ip": (main_pod.get("status") or {}).get("podIP") if main_pod else None,
            "ready": main_ready,
            "updated": None if main_pod is None else not main_old,
            "advertised": exposure.advertised(main_pod) if main_pod else None,
        },
        "nodes": nodes,
        "nodeCount": len(nodes),
        "readyNodes": sum(1 for n in nodes if n["ready"]),
        "updatedNodes": len(nodes) - len(old),
        "entryPoint": entry_point,
    }
    return SipFleetStatus.model_validate(raw).to_k8s()
