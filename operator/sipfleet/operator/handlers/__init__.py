"""kopf handlers, registered into an explicit registry with the runtime they share."""

from __future__ import annotations

from typing import Any

import kopf
from sipfleet.operator.handlers import conference, fleet, loadwatch, pods
from sipfleet.operator.kube import kopf_session
from sipfleet.operator.runtime import Runtime


def register(registry: kopf.OperatorRegistry, rt: Runtime, *, streams: int) -> None:
    """Register every handler; the control-loop interval comes from ``rt``.

    An explicit registry has none of kopf's default activities, so the login
    is registered here too: the same credentials as the operator's own client, in a
    session with a bounded connection pool sized for ``streams`` watch streams
    (see ``kube.kopf_session``).
    """

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.AiohttpSession:
        return kopf_session(rt.kubeconfig, streams=streams)

    fleet.register(registry, rt)
    conference.register(registry, rt)
    pods.register(registry, rt)
    loadwatch.register(registry, rt)
