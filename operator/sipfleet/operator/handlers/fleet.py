"""SipFleet: keep the admin-token Secret and the main server Pod, report status.

One timer per fleet does it all because each step is an idempotent
"ensure": a deleted Secret or main Pod comes back on the next tick.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic
from sipfleet.operator import disruption, exposure, metrics, rollout
from sipfleet.operator import pods as podlib
from sipfleet.operator.kube import KUBE_ERRORS, Obj
from sipfleet.operator.models import FLEET, GROUP, VERSION, SipFleetSpec
from sipfleet.operator.runtime import Runtime
from sipfleet.operator.status import fleet_status, status_patch

log = logging.getLogger(__name__)


def parse_spec(spec: Any) -> SipFleetSpec:
    """The SipFleet spec, or a PermanentError naming what is wrong."""
    try:
        return SipFleetSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        raise kopf.PermanentError(f"invalid SipFleet spec: {exc}") from exc


async def ensure_token_secret(rt: Runtime, body: Obj, spec: SipFleetSpec) -> str:
    """Create the admin-token Secret with a random token unless it exists; the token."""
    name = podlib.token_secret_name(body["metadata"]["name"], spec)
    secret = await rt.kube.ensure_secret(
        body["metadata"]["namespace"], podlib.token_secret(name, body)
    )
    return podlib.secret_token(secret)


async def ensure_main_pod(rt: Runtime, body: Obj, spec: SipFleetSpec) -> Obj:
    """Create the entry Service and the main server Pod (role main) unless they
    exist (the Pod waits for its own Service's address in a per-server exposure
    mode); the entry Service as stored. Raises exposure.NoHostSlot when HostPort
    mode finds no node for the main server."""
    fleet, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    entry = await rt.kube.ensure_service(namespace, exposure.entry_service(body, spec))
    pod = podlib.server_pod(
        body,
        podlib.main_pod_name(fleet),
        "main",
        podlib.server_pod_spec(fleet, spec, "main"),
    )
    groups = [str(m.spec["uri"]) for m in rt.serving((namespace, fleet), None) if m.spec]
    pod["metadata"]["annotations"] = {
        rollout.TEMPLATE_HASH: rollout.main_template_hash(body, spec),
        **podlib.expected_groups(groups),
    }
    exposed = await exposure.prepare_pod(rt.kube, body, pod, spec)
    if exposed is None:
        log.info("%s/%s: main server waits for its Service's address", namespace, fleet)
    else:
        await rt.kube.ensure_pod(namespace, exposed)
    return entry


async def ensure_budget(rt: Runtime, body: Obj) -> None:
    """Create or resize the fleet's PodDisruptionBudget (one server at a time).

    The Pods are listed under the fleet's budget lock, so of two updates
    racing (a Pod terminating, its replacement created) the one that lists
    last also writes last: a stale count never overwrites a newer one.
    """
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    async with rt.budget_lock((namespace, name)):
        pods = await rt.kube.list_pods(namespace, podlib.fleet_selector(name))
        budget = disruption.pod_disruption_budget(body, pods)
        if await rt.kube.apply_pdb(namespace, budget):  # logged when it changes only
            minimum = budget["spec"]["minAvailable"]
            log.info("budget %s/%s: minAvailable %d", namespace, name, minimum)


async def update_budget(rt: Runtime, namespace: str, fleet: str) -> None:
    """Resize the budget after a Pod came or went; failures wait for the timer."""
    try:
        body = await rt.kube.read_custom(GROUP, VERSION, namespace, FLEET.plural, fleet)
        if body is None:
            return
        await ensure_budget(rt, body)
    except KUBE_ERRORS as exc:
        log.info("disruption budget of %s/%s not updated: %s", namespace, fleet, exc)


_RESTORE_ERRORS: tuple[type[Exception], ...] = (
    *KUBE_ERRORS,
    pydantic.ValidationError,
    exposure.NoHostSlot,
)


async def restore_main(rt: Runtime, namespace: str, fleet: str) -> None:
    """Create the main server Pod again as soon as the old one is gone (a
    rolling update or a delete): the group URI has no server until then.
    Failures wait for the timer, which ensures the same."""
    try:
        body = await rt.kube.read_custom(GROUP, VERSION, namespace, FLEET.plural, fleet)
        if body is None:
            return
        spec = SipFleetSpec.model_validate(dict(body.get("spec") or {}))
        await ensure_main_pod(rt, body, spec)
        log.info("main server of %s/%s: created again", namespace, fleet)
    except _RESTORE_ERRORS as exc:
        log.info("main server of %s/%s not created yet: %s", namespace, fleet, exc)


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    @kopf.timer(
        GROUP, VERSION, FLEET.plural, id="reconcile-fleet", interval=rt.interval, registry=registry
    )
    async def reconcile_fleet(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        namespace: str | None,
        name: str,
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        assert namespace is not None  # both kinds are namespaced
        metrics.RECONCILES.labels(FLEET.kind).inc()
        fleet_spec = parse_spec(spec)
        obj = dict(body)
        entry: Obj | None = None
        unplaced: exposure.NoHostSlot | None = None
        try:
            await ensure_token_secret(rt, obj, fleet_spec)
            entry = await ensure_main_pod(rt, obj, fleet_spec)
        except ValueError as exc:
            metrics.ERRORS.labels("fleet").inc()
            kopf.event(body, type="Warning", reason="TokenInvalid", message=str(exc))
        except exposure.NoHostSlot as exc:
            unplaced = exc
            entry = await rt.kube.read_service(namespace, exposure.entry_service_name(name))
            kopf.event(body, type="Warning", reason=exc.reason, message=f"main server: {exc}")
        pods = await rt.kube.list_pods(namespace, podlib.fleet_selector(name))
        try:
            await ensure_budget(rt, obj)
        except KUBE_ERRORS as exc:
            metrics.ERRORS.labels("fleet").inc()
            kopf.event(body, type="Warning", reason="BudgetFailed", message=str(exc))
        main = next((p for p in pods if p["metadata"]["name"] == podlib.main_pod_name(name)), None)
        nodes = [p for p in pods if podlib.node_index(p["metadata"]["name"]) is not None]
        new = fleet_status(
            main,
            nodes,
            rt.server_members.get((namespace, name), {}),
            meta.get("generation"),
            dict(status),
            datetime.now(UTC),
            rollout.node_template_hash(obj, fleet_spec),
            exposure.entry_point(entry),
            unplaced=(unplaced.reason, f"main server: {unplaced}") if unplaced else None,
            main_template=rollout.main_template_hash(obj, fleet_spec),
            roll_main=fleet_spec.rollout.main_server,
        )
        patch.status.update(status_patch(status, new))
        metrics.set_fleet(
            namespace,
            name,
            nodes=new["nodeCount"],
            ready=new["readyNodes"],
            max_nodes=fleet_spec.max_nodes,
        )

    @kopf.on.delete(
        GROUP, VERSION, FLEET.plural, id="forget-fleet", optional=True, registry=registry
    )
    def forget_fleet(namespace: str | None, name: str, **_: Any) -> None:
        """No finalizer (optional): only the metrics forget the fleet."""
        assert namespace is not None
        metrics.forget_fleet(namespace, name)
