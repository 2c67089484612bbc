"""Crash recovery as the operator sees it: an Event for each server that restarted.

The servers bring a dead server's members back themselves (sip-node
replicas.py, recovery.py, rejoin.py: the holder of its dialogs' replicas
notices the restart or the silence and INVITEs each member back). The
operator's share is the restarted server's state: on its next pass it sees
the server's routes generation at 0 and its shard missing, so it creates the
shard and pushes the route table again (executor.py, as for any new server).
This module adds the record: a Warning Event `ServerRestarted` on the
SipConference for each of its server Pods whose container restarted since
the previous pass, with the kubelet's reason for the last termination
(`OOMKilled`, `Error` with exit code 137 for a SIGKILL, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sipfleet.operator.executor import Event
from sipfleet.operator.kube import Obj


def restarts_of(pod: Obj) -> int:
    """How many times the kubelet restarted the Pod's containers."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def _last_exit(pod: Obj) -> str:
    """`reason, exit code N` of the last termination the kubelet recorded."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        last = (status.get("lastState") or {}).get("terminated")
        if last:
            return f"{last.get('reason') or 'terminated'}, exit code {last.get('exitCode')}"
    return "no termination recorded"


def restart_events(
    group: str, servers: Iterable[Obj], seen: Mapping[str, int]
) -> tuple[list[Event], dict[str, int]]:
    """Warning Events for server Pods whose restart count grew since `seen` (Pod UID
    -> restart count at the previous pass), and what to remember for the next one.
    A Pod seen for the first time is only remembered: its earlier restarts came
    before this operator was watching (or were reported by a previous leader)."""
    events: list[Event] = []
    now: dict[str, int] = {}
    for pod in servers:
        meta = pod.get("metadata") or {}
        uid, count = str(meta.get("uid", "")), restarts_of(pod)
        now[uid] = count
        before = seen.get(uid)
        if before is not None and count > before:
            events.append(
                Event(
                    "Warning",
                    "ServerRestarted",
                    f"{meta.get('name')} restarted ({_last_exit(pod)}): it lost its members' "
                    f"dialogs; the server holding their replicas brings the members of {group} "
                    "back (sipfleet_node_rejoins_total)",
                )
            )
    return events, now
