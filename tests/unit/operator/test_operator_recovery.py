"""The operator's record of crashed servers: one Warning Event per container restart."""

from __future__ import annotations

from typing import Any

from sipfleet.operator.recovery import (
    kept_reports,
    lost_events,
    process_key,
    restart_events,
    restarts_of,
)

GROUP = "sip:conf@example.com"


def pod(name: str, uid: str, restarts: int, reason: str = "Error", code: int = 137) -> Any:
    last = {"terminated": {"reason": reason, "exitCode": code}} if restarts else {}
    return {
        "metadata": {"name": name, "uid": uid},
        "status": {"containerStatuses": [{"restartCount": restarts, "lastState": last}]},
    }


def test_a_restart_since_the_last_pass_is_reported_once() -> None:
    events, seen = restart_events(GROUP, [pod("f-main", "u1", 0), pod("f-node-1", "u2", 0)], {})
    assert events == [] and seen == {"u1": 0, "u2": 0}
    events, seen = restart_events(GROUP, [pod("f-main", "u1", 0), pod("f-node-1", "u2", 1)], seen)
    (event,) = events
    assert (event.type, event.reason) == ("Warning", "ServerRestarted")
    assert "f-node-1 restarted (Error, exit code 137)" in event.message
    assert GROUP in event.message
    events, _ = restart_events(GROUP, [pod("f-node-1", "u2", 1)], seen)
    assert events == []


def test_restarts_before_the_operator_watched_are_not_reported() -> None:
    events, seen = restart_events(GROUP, [pod("f-node-1", "u2", 4, "OOMKilled")], {})
    assert events == [] and seen == {"u2": 4}
    events, _ = restart_events(GROUP, [pod("f-node-1", "u3", 0)], seen)  # a new Pod, same name
    assert events == []


def test_a_pod_without_status_has_no_restarts() -> None:
    assert restarts_of({"metadata": {"name": "x", "uid": "u"}}) == 0


def test_members_lost_by_a_restarted_server_are_reported_once_per_process() -> None:
    first = process_key(pod("f-node-1", "u2", 1))
    assert first == "f-node-1/u2/1"
    events, seen = lost_events(GROUP, {"f-main/u1/0": 0, first: 0}, {})
    assert events == []  # its holder's answer has not come yet
    events, seen = lost_events(GROUP, {"f-main/u1/0": 0, first: 4}, seen)
    (event,) = events
    assert (event.type, event.reason) == ("Warning", "MembersLost")
    assert event.message.startswith("f-node-1 restarted and 4 members of " + GROUP)
    assert lost_events(GROUP, {first: 4}, seen)[0] == []  # counted once
    # The next restart is a new process: its own count, even if the same number.
    again = process_key(pod("f-node-1", "u2", 2))
    (event,) = lost_events(GROUP, {again: 4}, seen)[0]
    assert "and 4 members" in event.message


def test_a_server_reporting_its_instance_is_one_process_whatever_the_pod_status_says() -> None:
    """The kubelet may post a restart after the new process already counted its lost
    members: the key follows the instance the process reports, not the restart count,
    so the count is posted once."""
    stale, fresh = pod("f-node-1", "u2", 1), pod("f-node-1", "u2", 2)
    assert process_key(stale, "a1b2") == process_key(fresh, "a1b2") == "f-node-1/a1b2"
    events, seen = lost_events(GROUP, {process_key(stale, "a1b2"): 4}, {})
    assert len(events) == 1
    assert lost_events(GROUP, {process_key(fresh, "a1b2"): 4}, seen)[0] == []


def test_what_was_posted_is_kept_for_servers_not_read_this_pass() -> None:
    """A server that did not answer this pass keeps its memory (else its count would be
    posted again when it answers); a server read with a new instance drops the old
    process's; a Pod that went drops everything."""
    reported = {"f-main/a1": 0, "f-node-1/b1": 4, "f-node-1/b0": 2, "f-node-2/c1": 3}
    kept = kept_reports(reported, ["f-main/a2"], ["f-node-1"])
    assert kept == {"f-node-1/b1": 4, "f-node-1/b0": 2}
    assert kept_reports(reported, ["f-node-2/c1"], []) == {"f-node-2/c1": 3}
