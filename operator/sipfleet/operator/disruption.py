"""The PodDisruptionBudget of a fleet's server Pods (pure builders).

One budget per fleet selects every server Pod (main and nodes) with
``minAvailable`` = the fleet's Pods - 1, so a voluntary disruption
(``kubectl drain``, the eviction API) takes one server at a time and waits
until the one before it is gone and its replacement is Ready.

Why ``minAvailable`` as a number and not ``maxUnavailable``: the server Pods'
controller is a SipFleet, which has no scale subresource, and the disruption
controller needs one to turn ``maxUnavailable`` (or a percentage) into a
count; with an integer ``minAvailable`` it counts the selected Pods itself.
Terminating Pods are counted as Pods but never as healthy, so while one
server is stopping no other eviction is allowed. ``AlwaysAllow`` lets a
drain evict a server that is not Ready (it serves no one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sipfleet.operator import pods as podlib
from sipfleet.operator.kube import Obj


def budget_name(fleet: str) -> str:
    return f"{fleet}-servers"


def min_available(pods: Sequence[Mapping[str, Any]]) -> int:
    """Every server Pod but one (terminating ones included: they still count)."""
    return max(0, len(pods) - 1)


def pod_disruption_budget(fleet_body: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Obj:
    """The fleet's PodDisruptionBudget for its current ``pods``."""
    fleet = fleet_body["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": budget_name(fleet),
            "namespace": fleet_body["metadata"]["namespace"],
            "labels": {podlib.LABEL_FLEET: fleet},
            "ownerReferences": [podlib.owner_reference(fleet_body)],
        },
        "spec": {
            "minAvailable": min_available(pods),
            "selector": {"matchLabels": {podlib.LABEL_FLEET: fleet}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
