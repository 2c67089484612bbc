"""SipConference: the control loop (a kopf timer) and the release on deletion (finalizer).

The handlers only wire kopf to control.py (the pass) and status.py.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from sipfleet.node.admin_client import AdminError
from sipfleet.operator import control, metrics
from sipfleet.operator.errors import NotReady
from sipfleet.operator.executor import Outcome
from sipfleet.operator.kube import KUBE_ERRORS
from sipfleet.operator.models import CONFERENCE, GROUP, VERSION
from sipfleet.operator.runtime import ConferenceMemory, Runtime
from sipfleet.operator.status import conference_status, problem_status, status_patch

log = logging.getLogger(__name__)
_TRANSIENT: tuple[type[Exception], ...] = (AdminError, *KUBE_ERRORS)
_RETRIED: tuple[type[Exception], ...] = (NotReady, *_TRANSIENT)


def post_events(body: Mapping[str, Any], outcome: Outcome) -> None:
    """Post the pass's Events (kopf.event: kopf.info would obey the posting level)."""
    for event in outcome.events:
        kopf.event(
            cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message
        )


def remember(memory: ConferenceMemory, body: kopf.Body, ctx: control.Context) -> None:
    """What a pass started by a Pod event needs: identity, spec, fleet."""
    meta = body["metadata"]
    memory.ref = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
    }
    memory.spec = dict(body["spec"])
    memory.fleet = (ctx.namespace, ctx.fleet)


async def poke(rt: Runtime, memory: ConferenceMemory, why: str) -> None:
    """Run a pass now for a Pod event; failures are logged, the timer retries."""
    try:
        done = await control.poke(rt, memory)
    except _RETRIED as exc:
        log.info("pass for %s failed: %s", why, exc)
        return
    assert memory.ref is not None
    post_events(memory.ref, done.outcome)


def due(elapsed: float, interval: float, tick: float) -> bool:
    """Whether a pass is due on this timer tick.

    The timer ticks every ``tick`` (--interval) seconds; a conference's
    ``interval`` rounds up to whole ticks. Half a tick of slack absorbs a
    late tick (a busy loop), which must not cost a whole period.
    """
    ticks = max(1, math.ceil(interval / tick - 1e-9))
    return elapsed >= ticks * tick - tick / 2


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    @kopf.timer(
        GROUP,
        VERSION,
        CONFERENCE.plural,
        id="control-loop",
        interval=rt.interval,
        sharp=True,  # on the interval grid: the period does not grow by the pass's duration
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
        """One pass every spec.scaling.intervalSeconds (never faster than --interval)."""
        assert namespace is not None  # SipConference is namespaced
        memory = rt.memory(uid)
        interval = float((spec.get("scaling") or {}).get("intervalSeconds", rt.interval))
        if memory.last_pass is not None and not due(
            time.monotonic() - memory.last_pass, interval, rt.interval
        ):
            return
        memory.last_pass = time.monotonic()
        metrics.RECONCILES.labels(CONFERENCE.kind).inc()
        now = datetime.now(UTC)
        try:
            async with memory.lock:
                ctx = await control.load_context(
                    rt, namespace, name, spec, not_before=memory.changed_at
                )
                remember(memory, body, ctx)
                done = await control.control_pass(rt, ctx, memory)
        except NotReady as exc:
            metrics.ERRORS.labels("prerequisites").inc()
            new = problem_status(exc.reason, str(exc), meta.get("generation"), dict(status), now)
            patch.status.update(status_patch(status, new))
            return
        except _TRANSIENT as exc:
            metrics.ERRORS.labels("observe").inc()
            kopf.event(body, type="Warning", reason="ReconcileFailed", message=str(exc))
            raise kopf.TemporaryError(f"control loop failed: {exc}", delay=rt.interval) from exc
        post_events(body, done.outcome)
        new = conference_status(
            done.decision,
            done.observed.observations,
            meta.get("generation"),
            dict(status),
            now,
            done.outcome.failures,
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
        """Withdraw the group before the object goes; retried until nothing fails."""
        assert namespace is not None  # SipConference is namespaced
        memory = rt.conferences.pop(uid, None)  # no Pod event starts a pass from now on
        if memory is not None:
            async with memory.lock:  # one that is running ends first
                pass
        try:  # a fresh view: what to withdraw must be complete
            ctx = await control.load_context(rt, namespace, name, spec, not_before=time.monotonic())
        except NotReady as exc:
            kopf.event(body, type="Normal", reason="Released", message=f"nothing to release: {exc}")
            rt.conferences.pop(uid, None)
            return
        try:
            outcome = await control.release(rt, ctx)
        except _TRANSIENT as exc:
            raise kopf.TemporaryError(f"release failed: {exc}", delay=2) from exc
        post_events(body, outcome)
        if outcome.failures:
            raise kopf.TemporaryError(f"release incomplete: {'; '.join(outcome.failures)}", delay=2)
        rt.conferences.pop(uid, None)
