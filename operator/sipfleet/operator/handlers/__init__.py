"""kopf handlers, registered into an explicit registry with the runtime they share."""

from __future__ import annotations

from typing import Any

import kopf
from sipfleet.operator.handlers import conference, fleet
from sipfleet.operator.kube import connection_info
from sipfleet.operator.runtime import Runtime


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """Register every handler; the control-loop interval comes from ``rt``.

    An explicit registry has none of kopf's default activities, so the login
    is registered here too: the same credentials as the operator's own client.
    """

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(rt.kubeconfig)

    fleet.register(registry, rt)
    conference.register(registry, rt)
