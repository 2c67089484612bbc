"""SipConference: the control loop (a kopf timer) and the release on deletion.

A pass: observe -> plan -> apply -> status/Events/metrics. The handler only
wires these together; the work lives in observe.py, planner.py, executor.py
and status.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
import kubernetes
import pydantic
from sipfleet.node.admin_client import AdminError
from sipfleet.operator import metrics
from sipfleet.operator import pods as podlib
from sipfleet.operator.executor import Executor, Outcome
from sipfleet.operator.kube import Obj
from sipfleet.operator.models import (
    CONFERENCE,
    FLEET,
    GROUP,
    VERSION,
    SipConferenceSpec,
    SipFleetSpec,
)
from sipfleet.operator.observe import observe
from sipfleet.operator.planner import PlanSpec, plan
from sipfleet.operator.runtime import Runtime
from sipfleet.operator.status import conference_status, problem_status, status_patch


class NotReady(Exception):
    """A prerequisite is missing; ``reason`` goes into the Degraded condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Context:
    """The conference joined with its fleet and the fleet's admin token."""

    spec: SipConferenceSpec
    fleet_body: Obj
    fleet_spec: SipFleetSpec
    token: str


async def load_context(rt: Runtime, namespace: str, spec: Any) -> Context:
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
    return Context(conf, fleet_body, fleet_spec, token)


def post_events(body: kopf.Body, outcome: Outcome) -> None:
    """Post the pass's Events (kopf.event: kopf.info would obey the posting level)."""
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    @kopf.timer(
        GROUP,
        VERSION,
        CONFERENCE.plural,
        id="control-loop",
        interval=rt.interval,
        registry=registry,
    )
    async def control_loop(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        namespace: str | None,
        name: str,
        uid: str,
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        assert namespace is not None  # both kinds are namespaced
        memory = rt.memory(uid)
        interval = float((spec.get("scaling") or {}).get("intervalSeconds", rt.interval))
        if memory.last_pass is not None and time.monotonic() - memory.last_pass < interval - 0.2:
            return
        memory.last_pass = time.monotonic()
        metrics.RECONCILES.labels(CONFERENCE.kind).inc()
        now = datetime.now(UTC)
        try:
            with metrics.DECISION_SECONDS.time():
                ctx = await load_context(rt, namespace, spec)
                fleet = ctx.fleet_body["metadata"]["name"]
                observed = await observe(
                    rt,
                    namespace,
                    fleet,
                    name,
                    ctx.spec.uri,
                    ctx.token,
                    rt.load_source(ctx.fleet_spec.metrics),
                )
                plan_spec = PlanSpec.from_resources(
                    ctx.spec, ctx.fleet_spec, other_nodes=observed.other_nodes
                )
                decision = plan(plan_spec, observed.observations, memory.history, time.time())
                memory.history = decision.history
                outcome = await Executor(
                    rt, namespace, ctx.fleet_body, ctx.fleet_spec, name, ctx.token, observed
                ).apply(decision)
        except NotReady as exc:
            metrics.ERRORS.labels("prerequisites").inc()
            new = problem_status(exc.reason, str(exc), meta.get("generation"), dict(status), now)
            patch.status.update(status_patch(status, new))
            return
        except (kubernetes.client.ApiException, AdminError, OSError) as exc:
            metrics.ERRORS.labels("observe").inc()
            kopf.event(body, type="Warning", reason="ReconcileFailed", message=str(exc))
            raise kopf.TemporaryError(f"control loop failed: {exc}", delay=rt.interval) from exc
        if decision.kind != "steady":
            metrics.DECISIONS.labels(decision.kind).inc()
        for _failure in outcome.failures:
            metrics.ERRORS.labels("apply").inc()
        rt.server_members.setdefault((namespace, fleet), {}).update(
            {
                server: sum(int(s.get("members", 0)) for s in state.get("shards", []))
                for server, state in observed.states.items()
            }
        )
        post_events(body, outcome)
        new = conference_status(
            decision,
            observed.observations,
            meta.get("generation"),
            dict(status),
            now,
            outcome.failures,
        )
        patch.status.update(status_patch(status, new))

    @kopf.on.delete(GROUP, VERSION, CONFERENCE.plural, id="release", registry=registry)
    async def release(
        body: kopf.Body,
        spec: kopf.Spec,
        namespace: str | None,
        name: str,
        uid: str,
        **_: Any,
    ) -> None:
        assert namespace is not None  # both kinds are namespaced
        """Withdraw the group: routes, shards (members get BYE), this conference's nodes."""
        try:
            ctx = await load_context(rt, namespace, spec)
        except NotReady as exc:
            kopf.event(body, type="Normal", reason="Released", message=f"nothing to release: {exc}")
            rt.conferences.pop(uid, None)
            return
        fleet = ctx.fleet_body["metadata"]["name"]
        observed = await observe(
            rt,
            namespace,
            fleet,
            name,
            ctx.spec.uri,
            ctx.token,
            rt.load_source(ctx.fleet_spec.metrics),
        )
        executor = Executor(
            rt, namespace, ctx.fleet_body, ctx.fleet_spec, name, ctx.token, observed
        )
        failures = await executor.withdraw(ctx.spec.uri)
        post_events(body, executor.outcome)
        if failures:
            raise kopf.TemporaryError(f"release incomplete: {'; '.join(failures)}", delay=2)
        rt.conferences.pop(uid, None)
