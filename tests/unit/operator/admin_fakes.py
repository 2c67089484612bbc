"""Admin contract values (sipfleet.node.admin_types) for operator tests, with defaults."""

from __future__ import annotations

from sipfleet.node.admin_types import NodeState, Routes, ShardState, SipAddress, TransferState
from sipfleet.node.presentation import SenderDisplay


def shard(
    group: str,
    members: int = 0,
    *,
    uri: str = "",
    capacity: int = 20,
    sender_display: SenderDisplay | None = None,
) -> ShardState:
    return ShardState(
        group=group,
        uri=uri or f"sip:{group[4:].split('@')[0]}-x@127.0.0.11",
        members=members,
        capacity=capacity,
        draining=False,
        sender_display=sender_display,
    )


def node_state(
    *shards: ShardState, generation: int = 0, draining: bool = False, name: str = "n"
) -> NodeState:
    return NodeState(
        name=name,
        role="node",
        domain="example.com",
        sip=SipAddress(host="127.0.0.11", port=5060),
        draining=draining,
        routes_generation=generation,
        shards=shards,
        routes=Routes(generation=generation, groups={}),
    )


def transfer(
    group: str,
    target: str,
    requested: int,
    *,
    moved: int = 0,
    failed: int = 0,
    state: str = "running",
) -> TransferState:
    return TransferState.model_validate(
        {
            "id": "t1",
            "group": group,
            "target": target,
            "method": "refer",
            "rate": 10.0,
            "requested": requested,
            "moved": moved,
            "failed": failed,
            "state": state,
            "pending": requested - moved - failed,
        }
    )
