"""Server Pods: a Pod turning Ready or starting to terminate starts a pass now.

The control loop's timer would see it within a period; reacting to the
watch event saves that wait (bench/operator_reaction.py). Which events
matter is podevents.py's call; this handler only routes them: to the
conferences the Pod serves (a node serves its conference, the main server
all of the fleet's) and to the fleet's disruption budget; a main server
Pod gone (rolled or deleted) is created again at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import kopf
from sipfleet.operator import pods as podlib
from sipfleet.operator import unmoved
from sipfleet.operator.handlers import conference
from sipfleet.operator.handlers.fleet import restore_main, update_budget
from sipfleet.operator.podevents import BUDGET_CHANGES, PASS_CHANGES
from sipfleet.operator.runtime import Runtime


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    @kopf.on.event("", "v1", "pods", labels={podlib.LABEL_FLEET: kopf.PRESENT}, registry=registry)
    async def server_pod_event(
        event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels, namespace: str | None, **_: Any
    ) -> None:
        assert namespace is not None  # Pods are namespaced
        change = rt.pod_transitions.change(event.get("type"), body)
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
