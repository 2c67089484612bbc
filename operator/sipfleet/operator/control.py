"""One SipConference control-loop pass, and its release on deletion.

A pass: load the context (spec, fleet, token) -> observe -> plan -> apply.
The kopf handlers in handlers/conference.py call these and write status.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from sipfleet.node.admin_types import Access
from sipfleet.node.presentation import SenderDisplay
from sipfleet.operator import metrics, rollout
from sipfleet.operator import pods as podlib
from sipfleet.operator.errors import NotReady
from sipfleet.operator.executor import Event, Executor, Outcome
from sipfleet.operator.kube import Obj
from sipfleet.operator.loadwatch import WatchTarget
from sipfleet.operator.models import FLEET, GROUP, VERSION, SipConferenceSpec, SipFleetSpec
from sipfleet.operator.observe import FleetView, Observed, observe, view_fleet
from sipfleet.operator.planner import Decision, PlanSpec, plan
from sipfleet.operator.recovery import (
    grown,
    kept_reports,
    lost_events,
    process_key,
    restart_events,
)
from sipfleet.operator.runtime import ConferenceMemory, Runtime
from sipfleet.operator.unmoved import merged


@dataclass(frozen=True)
class FleetSnapshot:
    """A fleet, its admin token and its servers, shared by its conferences' passes."""

    body: Obj
    spec: SipFleetSpec
    token: str
    view: FleetView


@dataclass(frozen=True)
class Context:
    """The conference joined with its fleet snapshot."""

    namespace: str
    name: str
    spec: SipConferenceSpec
    snapshot: FleetSnapshot

    @property
    def fleet(self) -> str:
        return str(self.snapshot.body["metadata"]["name"])


@dataclass(frozen=True)
class Pass:
    """What one pass saw, decided and did."""

    observed: Observed
    decision: Decision
    outcome: Outcome


async def fetch_fleet(rt: Runtime, namespace: str, fleet_name: str) -> FleetSnapshot:
    """Read the fleet, its token and its servers; NotReady says what is missing."""
    fleet_body = await rt.kube.read_custom(GROUP, VERSION, namespace, FLEET.plural, fleet_name)
    if fleet_body is None:
        raise NotReady("FleetNotFound", f"SipFleet {namespace}/{fleet_name} does not exist")
    try:
        fleet_spec = SipFleetSpec.model_validate(fleet_body.get("spec") or {})
    except pydantic.ValidationError as exc:
        raise NotReady("InvalidFleet", f"SipFleet {fleet_name} is invalid: {exc}") from exc
    secret_name = podlib.token_secret_name(fleet_name, fleet_spec)
    secret = await rt.kube.read_secret(namespace, secret_name)
    if secret is None:
        raise NotReady("TokenMissing", f"Secret {namespace}/{secret_name} does not exist yet")
    try:
        token = podlib.secret_token(secret)
    except ValueError as exc:
        raise NotReady("TokenInvalid", str(exc)) from exc
    scrape = not fleet_spec.metrics.prometheus_url
    view = await view_fleet(rt, namespace, fleet_name, token, scrape=scrape)
    rt.server_members[(namespace, fleet_name)] = view.members_per_server()
    return FleetSnapshot(fleet_body, fleet_spec, token, view)


async def load_context(
    rt: Runtime, namespace: str, name: str, spec: Any, *, not_before: float = 0.0
) -> Context:
    """Parse the spec and join the fleet snapshot (no older than ``not_before``)."""
    try:
        conf = SipConferenceSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        raise NotReady("InvalidSpec", f"invalid SipConference spec: {exc}") from exc
    fleet = conf.fleet_ref.name
    snapshot = await rt.snapshots.get(
        (namespace, fleet), lambda: fetch_fleet(rt, namespace, fleet), not_before=not_before
    )
    return Context(namespace, name, conf, snapshot)


async def _observe(rt: Runtime, ctx: Context) -> Observed:
    snap = ctx.snapshot
    return await observe(
        snap.view,
        ctx.name,
        ctx.spec.uri,
        rt.load_source(snap.spec.metrics),
        rollout.node_template_hash(snap.body, snap.spec),
        rollout.main_template_hash(snap.body, snap.spec),
    )


def _executor(rt: Runtime, ctx: Context, observed: Observed) -> Executor:
    snap = ctx.snapshot
    access = Access.model_validate(ctx.spec.access.to_k8s())
    mode = ctx.spec.sender_display
    return Executor(
        rt,
        ctx.namespace,
        snap.body,
        snap.spec,
        ctx.name,
        snap.token,
        observed,
        access,
        None if mode is None else SenderDisplay(mode),
    )


async def control_pass(rt: Runtime, ctx: Context, memory: ConferenceMemory) -> Pass:
    """Observe, plan with the remembered History, apply; record metrics."""
    with metrics.DECISION_SECONDS.time():
        observed = await _observe(rt, ctx)
        spec = PlanSpec.from_resources(
            ctx.spec,
            ctx.snapshot.spec,
            other_nodes=observed.other_nodes,
            others_settled=observed.others_settled,
        )
        decision = plan(spec, observed.observations, memory.history, time.time())
        memory.history = decision.history
        outcome = await _executor(rt, ctx, observed).apply(decision)
    watched = rt.unmoved.counts(ctx.namespace, ctx.name, decision.group, time.monotonic())
    stopped = merged(observed.unmoved, watched)
    found, memory.unmoved = unmoved_events(decision.group, stopped, memory.unmoved)
    outcome.events.extend(found)
    servers = ([observed.main_pod] if observed.main_pod else []) + list(observed.node_pods)
    crashed, memory.restarts = restart_events(decision.group, servers, memory.restarts)
    outcome.events.extend(crashed)
    shards = {
        server: shard
        for server, state in observed.states.items()
        for shard in state.shards
        if shard.group == decision.group
    }
    dropped = {server: shard.dropped for server, shard in shards.items()}
    found, memory.dropped = dropped_events(decision.group, dropped, memory.dropped)
    outcome.events.extend(found)
    names = [str(p["metadata"]["name"]) for p in servers]
    processes = {
        n: process_key(p, observed.states[n].instance)
        for n, p in zip(names, servers, strict=True)
        if n in observed.states
    }
    lost = {processes[s]: shard.lost for s, shard in shards.items() if s in processes}
    current = kept_reports(memory.lost, processes.values(), set(names) - set(processes))
    found, memory.lost = lost_events(decision.group, lost, current)
    outcome.events.extend(found)
    memory.load_watch = _watch_target(ctx, spec, observed, decision)
    if decision.kind != "steady":
        metrics.DECISIONS.labels(decision.kind).inc()
    if outcome.failures:
        metrics.ERRORS.labels("apply").inc(len(outcome.failures))
    if decision.has_actions:
        memory.changed_at = time.monotonic()  # the next pass needs a view taken after this
    return Pass(observed, decision, outcome)


def _watch_target(
    ctx: Context, spec: PlanSpec, observed: Observed, decision: Decision
) -> WatchTarget | None:
    """What the load watch reads until the next pass: the servers hosting the group
    (scraped /metrics only; with Prometheus there is no watch)."""
    if ctx.snapshot.spec.metrics.prometheus_url:
        return None
    hosting = {
        s.name: observed.urls[s.name]
        for s in observed.observations.servers
        if s.shard is not None and s.name in observed.urls
    }
    return WatchTarget(spec, hosting, decision.members, decision.desired_nodes)


async def poke(rt: Runtime, memory: ConferenceMemory) -> Pass:
    """A pass started by a Pod event: the conference as the timer last saw it,
    on a fleet view taken now (the Pod just changed).

    Status is left to the timer's next pass; NotReady and transient errors
    propagate for the caller to log (the timer retries anyway).
    """
    assert memory.ref is not None and memory.spec is not None  # set by the timer's pass
    meta = memory.ref["metadata"]
    async with memory.lock:
        ctx = await load_context(
            rt, meta["namespace"], meta["name"], memory.spec, not_before=time.monotonic()
        )
        return await control_pass(rt, ctx, memory)


def unmoved_events(
    group: str, unmoved: Mapping[str, int], reported: Mapping[str, int]
) -> tuple[list[Event], dict[str, int]]:
    """Warning Events for members stopping servers could not move, each count once.

    ``unmoved`` is this pass's server -> count (terminating servers, and
    stopped ones read while they stopped within unmoved.KEEP_SECONDS);
    ``reported`` what earlier passes posted. Returns the new Events and what
    to remember: counts of servers no longer listed are forgotten, so a later
    Pod of the same name reports afresh.
    """
    events = [
        Event(
            "Warning",
            "MembersNotMoved",
            f"{server} stopped before it could move {unmoved[server]} members of {group} to "
            "another server; their sessions were ended with BYE",
        )
        for server, _ in grown(unmoved, reported)
    ]
    return events, dict(unmoved)


def dropped_events(
    group: str, dropped: Mapping[str, int], reported: Mapping[str, int]
) -> tuple[list[Event], dict[str, int]]:
    """Warning Events for members whose session a server ended without their asking
    and without moving them (its shard's ``dropped`` count grew), each count once.

    ``dropped`` is this pass's server -> count (servers it could read);
    ``reported`` what earlier passes posted. A count below the remembered one
    is a new Pod of the same name (or a new shard): remembered as is. Servers
    not read this pass keep their remembered count.
    """
    events = [
        Event(
            "Warning",
            "MembersDropped",
            f"{server} ended the sessions of {more} members of "
            f"{group} without moving them (a delivery timed out, the dialog was gone or "
            "the 2xx was never ACKed; sipfleet_node_members_removed_total by reason)",
        )
        for server, more in grown(dropped, reported)
    ]
    return events, {**reported, **dropped}


async def release(rt: Runtime, ctx: Context) -> Outcome:
    """Withdraw the group: routes, shards (members get BYE), the conference's nodes."""
    observed = await _observe(rt, ctx)
    executor = _executor(rt, ctx, observed)
    await executor.withdraw(ctx.spec.uri)
    return executor.outcome
