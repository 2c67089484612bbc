"""Scaling policy: how many nodes the load asks for, and how far to move
towards that this step (stabilization windows, cooldown, step bound, the
stale-metrics rule)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from sipfleet.operator.planning.values import History, Limit, PlanSpec, Recommendation


def members_at_load(capacity: int, fraction: float) -> int:
    """Members a server of ``capacity`` holds at ``fraction`` of it (at least 1)."""
    return max(1, math.floor(capacity * fraction + 1e-9))


def recommend_nodes(spec: PlanSpec, members: int) -> tuple[int, frozenset[Limit]]:
    """Nodes (besides the main server) that keep ``members`` at the target load.

    Clamped to [min_nodes, node budget]; the flags say which bound cut it.
    """
    per_server = members_at_load(spec.members_per_server, spec.scaling.target_load)
    limits: set[Limit] = set()
    servers = max(1, math.ceil(members / per_server))
    if spec.max_members is not None:
        cap = max(1, math.ceil(spec.max_members / per_server))
        if servers > cap:
            servers = cap
            limits.add(Limit.MAX_MEMBERS)
    nodes = max(servers - 1, spec.min_nodes)
    if nodes > spec.node_budget:
        nodes = spec.node_budget
        limits.add(Limit.MAX_NODES)
    return nodes, frozenset(limits)


def remember(spec: PlanSpec, history: History, now: float, nodes: int) -> History:
    """Append this instant's recommendation and forget what no window needs."""
    horizon = max(
        spec.scaling.scale_up_stabilization_seconds, spec.scaling.scale_down_stabilization_seconds
    )
    kept = tuple(r for r in history.recommendations if r.time >= now - horizon and r.time < now)
    return replace(
        history,
        started=history.started if history.started is not None else now,
        recommendations=(*kept, Recommendation(now, nodes)),
    )


def _window(history: History, now: float, seconds: int) -> list[int]:
    return [r.nodes for r in history.recommendations if r.time >= now - seconds]


@dataclass(frozen=True)
class Step:
    """The size change this tick: +n create, -n drain, with flags and notes."""

    change: int = 0
    limits: frozenset[Limit] = frozenset()
    notes: tuple[str, ...] = ()


def _held(limit: Limit, note: str) -> Step:
    return Step(limits=frozenset({limit}), notes=(note,))


def _bounded(
    spec: PlanSpec, target: int, current: int, desired: int, in_progress: int, cooling: bool
) -> Step:
    """Cooldown and the step bound; ``in_progress`` nodes still count toward the step.

    Counting the previous step's unfinished nodes (still starting, or still
    draining) makes re-planning before they finish a no-op.
    """
    direction = "scale-out" if target > current else "scale-in"
    if cooling:
        return _held(Limit.COOLDOWN, f"{direction} to {target} nodes waits for the cooldown")
    limits = {Limit.STABILIZING} if target != desired else set()
    change = abs(target - current)
    room = max(0, spec.scaling.max_nodes_per_step - in_progress)
    if change > room:
        change = room
        limits.add(Limit.STEP)
    if change == 0:
        return Step(
            limits=frozenset(limits),
            notes=(f"{direction} to {target} nodes waits for {in_progress} nodes in progress",),
        )
    return Step(change=change if target > current else -change, limits=frozenset(limits))


def scale_step(
    spec: PlanSpec,
    history: History,
    now: float,
    current: int,
    desired: int,
    progress: tuple[int, int],
    stale: list[str],
) -> Step:
    """Stabilization windows, the stale-metrics rule, then cooldown and step bound.

    ``progress`` is (nodes still starting, nodes still draining).
    """
    policy = spec.scaling
    cooling = history.last_scale is not None and now - history.last_scale < policy.cooldown_seconds
    if desired > current:
        target = min(_window(history, now, policy.scale_up_stabilization_seconds))
        if target <= current:
            return _held(
                Limit.STABILIZING, f"scale-out to {desired} nodes waits for the scale-up window"
            )
        return _bounded(spec, target, current, desired, progress[0], cooling)
    if desired < current:
        if stale:
            return _held(
                Limit.METRICS_STALE,
                f"no scale-in: metrics stale or missing for {', '.join(stale)}",
            )
        window = policy.scale_down_stabilization_seconds
        assert history.started is not None  # remember sets it
        target = max(_window(history, now, window))
        if history.started > now - window or target >= current:
            return _held(
                Limit.STABILIZING, f"scale-in to {desired} nodes waits for the scale-down window"
            )
        return _bounded(spec, target, current, desired, progress[1], cooling)
    return Step()
