"""One SipConference control-loop pass, and its release on deletion.

A pass: load the context (spec, fleet, token) -> observe -> plan -> apply.
The kopf handlers in handlers/conference.py call these and write status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pydantic
from sipfleet.operator import metrics
from sipfleet.operator import pods as podlib
from sipfleet.operator.executor import Executor, Outcome
from sipfleet.operator.kube import Obj
from sipfleet.operator.models import FLEET, GROUP, VERSION, SipConferenceSpec, SipFleetSpec
from sipfleet.operator.observe import Observed, observe
from sipfleet.operator.planner import Decision, PlanSpec, plan
from sipfleet.operator.runtime import ConferenceMemory, Runtime


class NotReady(Exception):
    """A prerequisite is missing; ``reason`` goes into the Degraded condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Context:
    """The conference joined with its fleet and the fleet's admin token."""

    namespace: str
    name: str
    spec: SipConferenceSpec
    fleet_body: Obj
    fleet_spec: SipFleetSpec
    token: str

    @property
    def fleet(self) -> str:
        return str(self.fleet_body["metadata"]["name"])


@dataclass(frozen=True)
class Pass:
    """What one pass saw, decided and did."""

    observed: Observed
    decision: Decision
    outcome: Outcome


async def load_context(rt: Runtime, namespace: str, name: str, spec: Any) -> Context:
    """Parse the spec, fetch the fleet and its token; NotReady says what is missing."""
    try:
        conf = SipConferenceSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        raise NotReady("InvalidSpec", f"invalid SipConference spec: {exc}") from exc
    fleet_name = conf.fleet_ref.name
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
    return Context(namespace, name, conf, fleet_body, fleet_spec, token)


async def _observe(rt: Runtime, ctx: Context) -> Observed:
    return await observe(
        rt,
        ctx.namespace,
        ctx.fleet,
        ctx.name,
        ctx.spec.uri,
        ctx.token,
        rt.load_source(ctx.fleet_spec.metrics),
    )


def _executor(rt: Runtime, ctx: Context, observed: Observed) -> Executor:
    return Executor(
        rt, ctx.namespace, ctx.fleet_body, ctx.fleet_spec, ctx.name, ctx.token, observed
    )


async def control_pass(rt: Runtime, ctx: Context, memory: ConferenceMemory) -> Pass:
    """Observe, plan with the remembered History, apply; record metrics."""
    with metrics.DECISION_SECONDS.time():
        observed = await _observe(rt, ctx)
        spec = PlanSpec.from_resources(ctx.spec, ctx.fleet_spec, other_nodes=observed.other_nodes)
        decision = plan(spec, observed.observations, memory.history, time.time())
        memory.history = decision.history
        outcome = await _executor(rt, ctx, observed).apply(decision)
    if decision.kind != "steady":
        metrics.DECISIONS.labels(decision.kind).inc()
    if outcome.failures:
        metrics.ERRORS.labels("apply").inc(len(outcome.failures))
    rt.server_members.setdefault((ctx.namespace, ctx.fleet), {}).update(
        {
            server: sum(int(s.get("members", 0)) for s in state.get("shards", []))
            for server, state in observed.states.items()
        }
    )
    return Pass(observed, decision, outcome)


async def release(rt: Runtime, ctx: Context) -> Outcome:
    """Withdraw the group: routes, shards (members get BYE), the conference's nodes."""
    observed = await _observe(rt, ctx)
    executor = _executor(rt, ctx, observed)
    await executor.withdraw(ctx.spec.uri)
    return executor.outcome
