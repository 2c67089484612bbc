"""SipConference: the load watch, a kopf daemon that starts a pass when a join
pushes the group over its target between two timer passes (loadwatch.py).

bench/operator_reaction.py measures what it saves: the wait for the next
timer pass after the load crosses the target (up to a whole interval).
"""

from __future__ import annotations

from typing import Any

import kopf
from sipfleet.operator import loadwatch
from sipfleet.operator.handlers import conference
from sipfleet.operator.loadsource import ScrapeLoadSource
from sipfleet.operator.models import CONFERENCE, GROUP, VERSION
from sipfleet.operator.runtime import Runtime

READ_TIMEOUT = 1.0
"""Seconds one round of /metrics reads may take (a slow server waits for the pass)."""


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    scrapes = loadwatch.SharedScrapes(ScrapeLoadSource(rt.session, timeout=READ_TIMEOUT))

    @kopf.daemon(
        GROUP,
        VERSION,
        CONFERENCE.plural,
        id="load-watch",
        cancellation_timeout=READ_TIMEOUT + 1,
        registry=registry,
    )
    async def load_watch(uid: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
        """Read the group's members every poll period; a pass at once when they ask
        for more nodes than the last pass decided on. Ends when the conference goes."""
        while not stopped:
            memory = rt.conferences.get(uid)  # never created here: the timer owns it
            before = memory.load_watch if memory is not None else None
            await stopped.wait(before.poll_seconds if before else rt.interval)
            target = memory.load_watch if memory is not None else None
            if stopped or memory is None or target is None or memory.lock.locked():
                continue  # a pass runs now (or none has yet): it reads the load itself
            members = await loadwatch.read_members(scrapes, target)
            if members is None or target is not memory.load_watch:
                continue  # a server did not answer, or a pass ran meanwhile
            if target.asks_for_more(members):
                why = f"{members} members need more nodes than {target.desired_nodes}"
                await conference.poke(rt, memory, why)
