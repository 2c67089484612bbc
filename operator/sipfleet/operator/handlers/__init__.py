"""kopf handlers, registered into an explicit registry with the runtime they share."""

from __future__ import annotations

from typing import Any

import kopf
from sipfleet.operator.handlers import conference, fleet
from sipfleet.operator.runtime import Runtime


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """Register every handler; the control-loop interval comes from ``rt``.

    An explicit registry has none of kopf's default activities, so the login
    (kubeconfig or in-cluster ServiceAccount, via the official client) is
    registered here too.
    """

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    fleet.register(registry, rt)
    conference.register(registry, rt)
