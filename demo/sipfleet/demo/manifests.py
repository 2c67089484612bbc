"""The demo's fleet and conference: small servers and short windows, so scaling shows fast.

Ten members per server at a target load of 0.8 means the operator wants one
more server for every eight members; 40 members fill the main server plus
four nodes (maxNodes 4). An eight-second scale-down window and a three-second
cooldown let the fleet shrink again within the demo's time budget.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "sipfleet-demo"
RELEASE = "sipfleet-demo"
"""The Helm release of the demo's operator (in NAMESPACE, watching it)."""
FLEET = "demo"
CONFERENCE = "chat"
DOMAIN = "example.com"
GROUP = f"sip:{CONFERENCE}@{DOMAIN}"
TOKEN_SECRET = f"{FLEET}-admin-token"
MEMBERS_PER_SERVER = 10
MAX_NODES = 4
MIN_NODES = 0
API_VERSION = "sipfleet.io/v1alpha1"


def fleet() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "SipFleet",
        "metadata": {"name": FLEET, "namespace": NAMESPACE},
        "spec": {
            "mainServer": {"domain": DOMAIN},
            "minNodes": MIN_NODES,
            "maxNodes": MAX_NODES,
            "membersPerNode": MEMBERS_PER_SERVER,
            "treeFanout": 2,
            "adminTokenSecret": TOKEN_SECRET,
        },
    }


def conference() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "SipConference",
        "metadata": {"name": CONFERENCE, "namespace": NAMESPACE},
        "spec": {
            "uri": GROUP,
            "fleetRef": {"name": FLEET},
            "capacity": {"membersPerServer": MEMBERS_PER_SERVER},
            "scaling": {
                "targetLoad": 0.8,
                "cooldownSeconds": 3,
                "scaleDownStabilizationSeconds": 8,
                "maxNodesPerStep": 2,
            },
            "transfer": {"mode": "refer", "membersPerSecond": 20},
            "access": {"policy": "open"},  # the demo's members have no credentials
        },
    }
