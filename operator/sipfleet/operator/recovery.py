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
(`OOMKilled`, `Error` with exit code 137 for a SIGKILL, ...); and a Warning
Event `MembersLost` when a restarted server counts members nobody brought
back (its shard's `lost`: it and the holder of its replicas died together,
or the group had no holder; sip-node restore.py).
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


def grown(counts: Mapping[str, int], reported: Mapping[str, int]) -> list[tuple[str, int]]:
    """(key, how much more than reported) for each count above what earlier passes
    posted, sorted by key: what the MembersLost/Dropped/NotMoved Events report once."""
    return [
        (key, count - reported.get(key, 0))
        for key, count in sorted(counts.items())
        if count > reported.get(key, 0)
    ]


def process_key(pod: Obj, instance: str = "") -> str:
    """One process of a server Pod (a restarted container is a new process with counts
    of its own): its name and the `instance` ID the process reports in its state
    (NodeState.instance, new at each start). For a server that reports none (it
    predates the field): its Pod UID and restart count, which can lag, since the
    kubelet may post the restart after the new process already answers."""
    meta = pod.get("metadata") or {}
    if instance:
        return f"{meta.get('name')}/{instance}"
    return f"{meta.get('name')}/{meta.get('uid', '')}/{restarts_of(pod)}"


def kept_reports(
    reported: Mapping[str, int], read: Iterable[str], unread: Iterable[str]
) -> dict[str, int]:
    """What to keep of `reported` (process_key -> count already posted) for this pass:
    the processes read now (`read`: their keys), and every process of a server not
    read now (`unread`: server names), until it answers again; the rest are processes
    that restarted or Pods that went."""
    keys, names = set(read), set(unread)
    return {k: c for k, c in reported.items() if k in keys or k.split("/", 1)[0] in names}


def lost_events(
    group: str, lost: Mapping[str, int], reported: Mapping[str, int]
) -> tuple[list[Event], dict[str, int]]:
    """Warning Events for members restarted servers lost with their previous process,
    each count once. `lost` is this pass's process_key -> the shard's `lost` (the
    servers it could read), `reported` what earlier passes posted; returns the new
    Events and what to remember (processes not read this pass are kept until their
    Pod restarts again or goes: the caller passes only the current keys' memory)."""
    events = [
        Event(
            "Warning",
            "MembersLost",
            f"{key.split('/', 1)[0]} restarted and {more} members of "
            f"{group} it had were brought back by nobody: the server holding their replicas "
            "had none (it failed too, or the group had no other server); their user agents "
            "learn it when a request in the dead dialog fails "
            "(sipfleet_node_unrecovered_members_total)",
        )
        for key, more in grown(lost, reported)
    ]
    return events, {**reported, **lost}
