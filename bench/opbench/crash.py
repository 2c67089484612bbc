"""Crash scenarios of bench/disruption.py: (d) kill -9 of a node's process, (e) kill -9
of the main server's process, on the e2e tests' disruption fleet.

As tests/e2e/test_operator_crash.py does it: the container's processes are
SIGKILLed from the host (``operator_harness.kill_server``), the kubelet starts
the container again (restartPolicy Always), and the server holding the dead
server's replicated dialogs brings each of its members back with an INVITE
(the sipp member logs REJOINED). A member is back at its first REJOINED line
after the kill; one not back within BACK_SECONDS is lost. The scenario ends
once the server has restarted and two more group messages were answered, so
messages refused meanwhile count in it.

Shared pieces used from tests/e2e: ``disruptions.Fleet``, ``disruptions.NS``,
``disruptions.scenario``, ``operator_harness.kill_server`` and
``operator_harness.restarts``.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import disruptions
from kube_support import wait_for
from operator_harness import kill_server, restarts

BACK_SECONDS = 60.0
"""How long members of a killed server may take to come back before they count as lost."""
REPLICATED_SECONDS = 3.0
"""Wait before the kill, so every dialog is replicated (a batch within 0.05 s of a
change, a heartbeat every second), as the e2e test does."""


@dataclass
class Comeback:
    """What became of the members of one killed server."""

    pod: str
    victims: set[str]
    back: dict[str, float] = field(default_factory=dict)
    """Member -> seconds from the kill to its REJOINED line."""

    @property
    def not_back(self) -> int:
        return len(self.victims - self.back.keys())

    def note(self) -> str:
        if not self.back:
            return f"kill -9 {self.pod}: none of {len(self.victims)} members back"
        times = list(self.back.values())
        return (
            f"kill -9 {self.pod}: {len(self.back)}/{len(self.victims)} back, the last after "
            f"{max(times):.2f}s (p50 {statistics.median(times):.2f}s)"
        )


COMEBACKS: dict[str, Comeback] = {}
"""Scenario name -> its outcome, for the benchmark's table (members lost)."""


def _rejoins(f: disruptions.Fleet) -> Counter[str]:
    return Counter(p[1] for p in f.members.lines("REJOINED"))


def crash(f: disruptions.Fleet, pod: str) -> Comeback:
    """kill -9 ``pod``'s processes; wait (bounded) until its members are back and the
    kubelet restarted it."""
    time.sleep(REPLICATED_SECONDS)
    ip = f.ips()[pod]
    out = Comeback(pod, {m for m, at in f.members.locations().items() if at == ip})
    before = _rejoins(f)
    restarted = restarts(f.kube, disruptions.NS, pod)
    killed = time.monotonic()
    kill_server(f.kube, disruptions.NS, pod)
    while out.not_back and time.monotonic() - killed < BACK_SECONDS:
        now = time.monotonic()
        counts = _rejoins(f)
        for m in out.victims - out.back.keys():
            if counts[m] > before[m]:
                out.back[m] = now - killed
        time.sleep(0.1)
    wait_for(
        f"{pod} restarted", lambda: restarts(f.kube, disruptions.NS, pod) > restarted, timeout=60
    )
    # Back in service for the group, not only Ready: the ticks sent through the main
    # server are answered again (a restarted main server has no shard of the group
    # until the operator places it again, and refuses them meanwhile); any tick it
    # refused falls in this scenario's range.
    answered = f.ticker.last()
    wait_for("two more ticks answered", lambda: f.ticker.last() >= answered + 2, timeout=60)
    return out


def _busiest_node(f: disruptions.Fleet) -> str:
    name, _, _ = f.busiest_node()
    return name


def _scenario(name: str, pick: str | None) -> None:
    def disrupt(f: disruptions.Fleet) -> tuple[set[str], str]:
        out = crash(f, pick or _busiest_node(f))
        COMEBACKS[name] = out
        return out.victims, out.note()

    disruptions.scenario(name, disrupt)


_scenario("d kill -9 of a node", None)
_scenario("e kill -9 of the main server", f"{disruptions.FLEET}-main")
