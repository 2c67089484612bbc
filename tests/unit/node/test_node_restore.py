"""A restarted server's first seconds in virtual time: 503 instead of 404 for its
groups until they are back, 503 instead of 481 for the dialogs it lost, and the
members nobody brought back (restore.py)."""

from __future__ import annotations

import pytest
from sipfleet.node.restore import DIALOG_GRACE, RESTORE_SECONDS, Hosted, Restoring

CONF1 = "sip:conf1@example.com"
CONF2 = "sip:conf2@example.com"


def restoring(started: float = 100.0) -> Restoring:
    return Restoring(Hosted({CONF1: 12, CONF2: 0}), "main", started)


def test_hosted_file_round_trip_and_bad_files() -> None:
    hosted = Hosted({CONF1: 12, CONF2: 0})
    assert Hosted.from_bytes(hosted.to_bytes()) == hosted
    for bad in (
        b"not json",
        b"[]",
        b'{"groups": []}',
        b'{"groups": {"sip:conf1@example.com": -1}}',
        b'{"groups": {"sip:conf1@example.com": "12"}}',
        b'{"groups": {"no-user": 1}}',
        b"\xff",
    ):
        with pytest.raises(ValueError):
            Hosted.from_bytes(bad)


def test_groups_not_back_yet_are_refused_until_restored_or_the_deadline() -> None:
    r = restoring()
    for user in ("conf1", "conf1-main", "conf2", "conf2-main"):
        assert r.group_pending(user, 100.5)
    assert not r.group_pending("conf3", 100.5)  # never hosted here: 404 as usual
    assert not r.group_pending("conf1-node1", 100.5)  # another server's shard
    r.restored(CONF1, 102.0)
    assert not r.group_pending("conf1", 102.0) and r.group_pending("conf2", 102.0)
    assert not r.group_pending("conf2", 100.0 + RESTORE_SECONDS)  # never back: 404 again


def test_unknown_dialogs_get_503_until_a_grace_after_the_last_group_is_back() -> None:
    r = restoring()
    assert r.dialogs_pending(101.0)
    r.restored(CONF1, 102.0)
    assert r.dialogs_pending(102.0 + DIALOG_GRACE + 1)  # conf2 still waited for
    r.restored(CONF2, 103.0)
    r.restored(CONF2, 104.0)  # again (a resize): no change
    assert r.dialogs_until == 103.0 + DIALOG_GRACE
    assert r.dialogs_pending(103.0 + DIALOG_GRACE - 0.01)
    assert not r.dialogs_pending(103.0 + DIALOG_GRACE)


def test_the_dialog_grace_never_passes_the_deadline() -> None:
    r = restoring()
    r.restored(CONF1, 100.0 + RESTORE_SECONDS - 1)
    r.restored(CONF2, 100.0 + RESTORE_SECONDS - 1)
    assert r.dialogs_until == r.deadline == 100.0 + RESTORE_SECONDS


def test_an_empty_hosted_file_still_covers_lost_dialogs_briefly() -> None:
    r = Restoring(Hosted({}), "node1", 10.0)
    assert r.dialogs_until == 10.0 + DIALOG_GRACE


def test_members_nobody_brought_back_are_counted_once_per_group() -> None:
    r = restoring()
    assert r.had(CONF1) == 12
    assert r.unrecovered(CONF1, 0) == 12  # its holder died too (a double failure)
    assert r.unrecovered(CONF1, 0) is None  # counted already
    assert r.had(CONF1) is None
    assert r.unrecovered(CONF2, 5) == 0  # more held than the file had: none lost
    r2 = restoring()
    assert r2.unrecovered(CONF1, 12) == 0  # the holder brought all back


def test_groups_still_waited_for_stay_in_the_next_hosted_file() -> None:
    """A second crash before the groups are back must not forget them."""
    r = restoring()
    assert r.waiting(101.0) == {CONF1: 12, CONF2: 0}
    r.restored(CONF1, 102.0)
    assert r.waiting(102.0) == {CONF2: 0}
    assert r.waiting(100.0 + RESTORE_SECONDS) == {}
