"""kopf handlers, registered into an explicit registry with the runtime they share."""

from __future__ import annotations

import kopf
from sipfleet.operator.handlers import conference, fleet
from sipfleet.operator.runtime import Runtime


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """Register every handler; the control-loop interval comes from ``rt``."""
    fleet.register(registry, rt)
    conference.register(registry, rt)
