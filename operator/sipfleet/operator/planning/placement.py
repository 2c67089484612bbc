"""Placement: which nodes to delete or drain, where the group's shards go,
which members move where, and the routing table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sipfleet.operator.planning.scaling import members_at_load
from sipfleet.operator.planning.values import (
    NodeAction,
    Observations,
    PlanSpec,
    Route,
    ServerObservation,
    ShardPlacement,
    Transfer,
    TransferMethod,
)


def flows(observations: Observations) -> tuple[Counter[str], Counter[str]]:
    """Members still in flight: (leaving each source, arriving at each target)."""
    out: Counter[str] = Counter()
    inc: Counter[str] = Counter()
    for t in observations.transfers:
        out[t.source] += t.remaining
        inc[t.target] += t.remaining
    return out, inc


def _is_empty(server: ServerObservation, out: Counter[str], inc: Counter[str]) -> bool:
    """Provably no members: never started, or ready with fresh metrics and none."""
    if out[server.name] or inc[server.name] or server.members:
        return False
    if server.phase == "Pending":
        return True
    return server.ready and server.metrics == "fresh"


def deletions(
    nodes: tuple[ServerObservation, ...], out: Counter[str], inc: Counter[str]
) -> tuple[NodeAction, ...]:
    """Nodes to delete: terminated and empty, or drained and empty.

    A terminating node is never listed: Kubernetes is deleting it already.
    """
    actions = []
    for node in nodes:
        if node.terminating:
            continue
        if not node.alive and node.members == 0:
            actions.append(NodeAction(node.name, f"delete {node.name}: pod {node.phase}"))
        elif node.draining and node.alive and _is_empty(node, out, inc):
            actions.append(NodeAction(node.name, f"delete {node.name}: drained and empty"))
    return tuple(actions)


def drain_order(node: ServerObservation) -> tuple[int, bool, float, str]:
    """Emptiest first; among equals a not-ready one, then the newest."""
    return (node.members, node.ready, -node.created_at, node.name)


def stoppable(nodes: Iterable[ServerObservation], inc: Counter[str]) -> list[ServerObservation]:
    """Nodes that may be drained or stopped now, in ``drain_order``.

    Never one with members on their way in (``inc``): a member following a
    REFER there would be turned away by a draining server (302, or 503), and
    its source, waiting for that server's roster to list it, would time out
    and REFER it again, so the member ends up in two places or, with a user
    agent that does not follow the redirect, in none. Such a node becomes a
    candidate once its arrivals are confirmed.
    """
    return sorted((n for n in nodes if not inc[n.name]), key=drain_order)


def placements(spec: PlanSpec, hosts: list[ServerObservation]) -> tuple[ShardPlacement, ...]:
    return tuple(
        ShardPlacement(
            s.name,
            spec.group,
            spec.members_per_server,
            f"create {spec.group} on {s.name}",
        )
        for s in hosts
        if s.shard is None
    )


def moves(
    spec: PlanSpec,
    servers: list[ServerObservation],
    projected: dict[str, int],
    movable: dict[str, int],
) -> tuple[list[Transfer], list[str]]:
    """Move members off draining and over-watermark servers; updates ``projected``.

    ``projected`` counts members in flight at their target; ``movable`` only
    the members a source has and is not already moving (arrivals cannot be
    moved on before they arrive). A terminating server moves its own
    members (graceful exit), so it is never a source here.
    """
    policy = spec.scaling
    targets = [s for s in servers if s.shard and not s.draining and s.ready and s.alive]
    room = {
        s.name: members_at_load(s.shard.capacity, policy.target_load) - projected[s.name]
        for s in targets
        if s.shard
    }
    moves: list[tuple[ServerObservation, ServerObservation, int, str]] = []
    notes: list[str] = []
    for src in servers:
        if src.terminating or not (src.shard and src.ready and src.alive):
            continue
        if movable[src.name] <= 0:
            continue
        if src.draining:
            need, why = movable[src.name], "draining"
        else:
            limit = members_at_load(src.shard.capacity, policy.high_watermark)
            if projected[src.name] <= limit:
                continue
            excess = projected[src.name] - members_at_load(src.shard.capacity, policy.target_load)
            need = min(excess, movable[src.name])
            why = f"above high watermark ({projected[src.name]}/{src.shard.capacity})"
        for dst in sorted(targets, key=lambda t: (-room[t.name], t.name)):
            if need <= 0 or room[dst.name] <= 0 or dst.name == src.name:
                continue
            count = min(need, room[dst.name])
            moves.append((src, dst, count, why))
            room[dst.name] -= count
            projected[dst.name] += count
            projected[src.name] -= count
            need -= count
        if need > 0:
            notes.append(f"{need} members on {src.name} wait for room ({why})")
    method: TransferMethod = (
        "refer-to-server" if spec.transfer.mode == "refer-to-server" else "refer"
    )
    rate = spec.transfer.members_per_second / max(1, len(moves))
    transfers = [
        Transfer(
            source=src.name,
            target=dst.name,
            target_uri=dst.shard.uri,
            count=count,
            method=method,
            rate=rate,
            reason=f"move {count} members {src.name} -> {dst.name}: {src.name} {why}",
        )
        for src, dst, count, why in moves
        if dst.shard
    ]
    return transfers, notes


def route_table(
    spec: PlanSpec, servers: list[ServerObservation], projected: dict[str, int]
) -> tuple[Route, ...]:
    """Main first, then active nodes oldest first, then draining ones (leaves).

    Empty unless the main server is ready and hosts the group: a table
    without its root would cut the distribution tree, so none is better.
    """
    hosting = [s for s in servers if s.shard and s.ready and s.alive]
    if not any(s.role == "main" for s in hosting):
        return ()

    def order(s: ServerObservation) -> tuple[bool, bool, float, str]:
        return (s.role != "main", s.draining, s.created_at, s.name)

    routes = []
    for s in sorted(hosting, key=order):
        assert s.shard is not None
        if s.draining:
            routes.append(Route(s.name, s.shard.uri, "draining", 0))
        else:
            limit = members_at_load(s.shard.capacity, spec.scaling.high_watermark)
            routes.append(Route(s.name, s.shard.uri, "active", max(0, limit - projected[s.name])))
    return tuple(routes)
