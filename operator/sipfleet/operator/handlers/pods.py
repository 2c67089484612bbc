"""Server Pods: a Pod turning Ready or starting to terminate starts a pass now.

The control loop's timer would see it within a period; reacting to the
watch event saves that wait (bench/operator_reaction.py). Which events
matter is podevents.py's call; this handler only routes them: to the
conferences the Pod serves (a node serves its conference, the main server
all of the fleet's) and to the fleet's disruption budget; a main server
Pod gone (rolled or deleted) is created again at once. A server Pod whose
container runs but is not Ready yet gets its /readyz watched, so the kubelet
probes it the moment it answers (readiness.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf
from sipfleet.operator import pods as podlib
from sipfleet.operator import readiness, unmoved
from sipfleet.operator.handlers import conference
from sipfleet.operator.handlers.fleet import restore_main, update_budget
from sipfleet.operator.kube import KUBE_ERRORS
from sipfleet.operator.podevents import BUDGET_CHANGES, PASS_CHANGES
from sipfleet.operator.runtime import Runtime

log = logging.getLogger(__name__)


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    @kopf.on.event("", "v1", "pods", labels={podlib.LABEL_FLEET: kopf.PRESENT}, registry=registry)
    async def server_pod_event(
        event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels, namespace: str | None, **_: Any
    ) -> None:
        assert namespace is not None  # Pods are namespaced
        change = rt.pod_transitions.change(event.get("type"), body)
        if change == "gone":
            rt.serving_watches.pop(str(body["metadata"]["uid"]), None)
        else:
            _watch_serving(rt, namespace, body)
        if change is None:
            return
        fleet = labels[podlib.LABEL_FLEET]
        work = []
        if change in BUDGET_CHANGES:
            work.append(update_budget(rt, namespace, fleet))
        if change == "gone" and labels.get(podlib.LABEL_ROLE) == "main":
            work.append(restore_main(rt, namespace, fleet))
        if change in PASS_CHANGES:
            serves = None if labels.get(podlib.LABEL_ROLE) == "main" else podlib.conference_of(body)
            why = f"{body['metadata']['name']} {change}"
            work += [conference.poke(rt, m, why) for m in rt.serving((namespace, fleet), serves)]
            if change == "terminating":
                _watch_unmoved(rt, namespace, fleet, serves, body)
        await asyncio.gather(*work)


def _watch_serving(rt: Runtime, namespace: str, pod: kopf.Body) -> None:
    """Once per container of a starting server: poll its /readyz and mark the Pod
    the moment it answers, so the kubelet probes it at once (readiness.py)."""
    uid = str(pod["metadata"]["uid"])
    container = readiness.starting_container(pod)
    url = podlib.admin_url(pod)
    if container is None or url is None or rt.serving_watches.get(uid) == container:
        return
    rt.serving_watches[uid] = container
    name = str(pod["metadata"]["name"])

    def ready_or_gone() -> bool:
        seen = rt.pod_transitions.seen.get(uid)
        return seen is None or seen.ready or seen.terminating

    async def watch() -> None:
        if await readiness.wait_serving(rt.session, url, ready_or_gone):
            try:
                await rt.kube.patch_pod(namespace, name, readiness.serving_patch(time.time()))
            except KUBE_ERRORS as exc:  # the kubelet's own probe comes anyway
                log.info("could not mark %s serving: %s", name, exc)
            else:
                log.info("%s/%s answers /readyz: marked for the kubelet", namespace, name)

    task = asyncio.create_task(watch())
    rt.watches.add(task)
    task.add_done_callback(rt.watches.discard)


def _watch_unmoved(
    rt: Runtime, namespace: str, fleet: str, serves: str | None, pod: kopf.Body
) -> None:
    """Read the stopping server's count of members it could not move while it stops,
    and start a pass (which posts the Event) each time the count grows (unmoved.py)."""
    url = podlib.admin_url(pod)
    if url is None:
        return
    name = str(pod["metadata"]["name"])
    grace = float(pod.get("spec", {}).get("terminationGracePeriodSeconds") or 30)

    async def found(counts: dict[str, int]) -> None:
        if rt.unmoved.record(namespace, name, serves, counts, time.monotonic()):
            why = f"{name} could not move members"
            await asyncio.gather(
                *(conference.poke(rt, m, why) for m in rt.serving((namespace, fleet), serves))
            )

    task = asyncio.create_task(unmoved.watch(rt.session, url, grace, found))
    rt.watches.add(task)
    task.add_done_callback(rt.watches.discard)
