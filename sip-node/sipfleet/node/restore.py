"""A restarted server's first seconds: "come back soon" instead of "no such group", sans-I/O.

After a crash (SIGKILL, an OOM kill, a failed liveness probe) the kubelet
restarts the server's container in the same Pod: same name, same address,
but a process that knows nothing. Until the operator has given it back its
shards and route table (its next pass, typically 1 to 3 s), a join or a
group MESSAGE for one of its groups would get `404 No Such Group`: a final
answer that the group does not exist. It does; only this server is not
ready for it yet, which is what `503 Service Unavailable` with `Retry-After`
says (RFC 3261 21.5.4, 20.33): the sender may try again after that many
seconds.

How a process knows it is a restart and not a fresh server: it keeps a small
file (`Hosted`: each group it hosts and how many members it had) in the
Pod's emptyDir, which survives a container restart but not the Pod. A
process that finds the file at start is a restart of the same Pod; a new Pod
starts with an empty directory. A new Pod of a server whose groups are known
(the main server's, recreated by the operator after a rollout or an
eviction) gets them from the operator instead: an expected-groups file in
the same format, member counts 0, that the operator writes into a Pod
annotation and the kubelet mounts (downward API); it is read only when there
is no hosted file. `Restoring` then answers, for the groups the file lists
and for at most RESTORE_SECONDS:

- an out-of-dialog request (join INVITE, MESSAGE, SUBSCRIBE) whose
  Request-URI names such a group or this server's shard of it, while its
  shard is not back: 503 with Retry-After (once the shard is back, the
  request is served; after the deadline, a group never given back is 404
  again);
- an in-dialog request that matches no dialog: 503 with Retry-After instead
  of 481 until DIALOG_GRACE after the last shard is back (or the deadline).
  A 481 tells the member's UA to end its dialog (RFC 3261 12.2.1.2), and
  that dialog is exactly the one the server holding its replica is about to
  take over (recovery.py): a 503 leaves it alive.

`Hosted.members` also lets the restarted server count the members nobody
brought back (a double failure: it and its replicas' holder died together;
or a group alone on the main server, which has no holder): `unrecovered`
compares what it had with what the holder says it held of the previous
instance (rejoin.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sipfleet.node.focus import user_of

RESTORE_SECONDS = 30.0
"""Seconds after a restart during which groups not given back yet get 503, not 404
(covers the operator's next pass, and a few more if the API server is slow)."""
DIALOG_GRACE = 5.0
"""Seconds after the last shard is back during which an unknown dialog still gets 503:
the holder's takeover (recovery.py: at the restarted server's first batch, or after
DEAD_AFTER = 3 s of silence) moves the dead dialogs within that time."""
RETRY_AFTER = 2
"""Seconds a refused request should wait (Retry-After, RFC 3261 20.33): the measured
restart gap is 1.5 to 3 s."""
RESTORED = frozenset({"INVITE", "MESSAGE", "SUBSCRIBE", "REFER"})
"""Out-of-dialog methods addressed to a group (a join, a group message, a conference
subscription): answered 503 for a group not back yet."""
MAX_GROUPS = 10000
"""Groups a hosted file may list to be read (our own file, but still bounded: about
40 bytes a group); a server with more starts as a fresh one after a restart."""


@dataclass(frozen=True, slots=True)
class Hosted:
    """What a server hosted, as its hosted file says: group URI -> members."""

    members: Mapping[str, int]

    def to_bytes(self) -> bytes:
        return json.dumps({"groups": dict(self.members)}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Hosted:
        """Read a hosted file; raises ValueError for anything else."""
        try:
            parsed = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        groups = parsed.get("groups") if isinstance(parsed, dict) else None
        if not isinstance(groups, dict) or len(groups) > MAX_GROUPS:
            raise ValueError(f"'groups' is an object of at most {MAX_GROUPS} groups")
        for group, count in groups.items():
            if not user_of(group) or not isinstance(count, int) or count < 0:
                raise ValueError(f"group {group!r}: a SIP URI with a member count")
        return cls(groups)


class Restoring:
    """What a restarted server (`server`, started at `started`, monotonic seconds)
    refuses with 503 while its groups come back."""

    def __init__(self, hosted: Hosted, server: str, started: float) -> None:
        self._waiting = set(hosted.members)
        self._had = dict(hosted.members)
        self._users = {
            user: group
            for group in hosted.members
            for user in (user_of(group), f"{user_of(group)}-{server}")
        }
        self._deadline = started + RESTORE_SECONDS
        self._dialogs_until = self._deadline if self._waiting else started + DIALOG_GRACE

    def group_pending(self, user: str, now: float) -> bool:
        """Does an out-of-dialog request to Request-URI user `user` get 503 (its group
        was hosted here and is not back yet, within the deadline)?"""
        group = self._users.get(user)
        return group is not None and group in self._waiting and now < self._deadline

    def dialogs_pending(self, now: float) -> bool:
        """Does an in-dialog request matching no dialog get 503 rather than 481?"""
        return now < self._dialogs_until

    def restored(self, group: str, now: float) -> None:
        """The operator gave `group`'s shard back; once every group is back, unknown
        dialogs get 503 for DIALOG_GRACE more seconds."""
        if group not in self._waiting:
            return
        self._waiting.discard(group)
        if not self._waiting:
            self._dialogs_until = min(self._deadline, now + DIALOG_GRACE)

    def unrecovered(self, group: str, held: int) -> int | None:
        """Members of `group` the previous instance had that nobody brought back,
        given that its replicas' holder `held` that many of them; None when this
        group's count was already taken (each is counted once)."""
        had = self._had.pop(group, None)
        return None if had is None else max(0, had - held)

    def waiting(self, now: float) -> dict[str, int]:
        """The groups not back yet (before the deadline) and what the previous process
        had of them: a restart before they are back must still know them."""
        if now >= self._deadline:
            return {}
        return {group: self._had.get(group, 0) for group in self._waiting}

    def had(self, group: str) -> int | None:
        """What the previous instance had of `group` and is not accounted for yet."""
        return self._had.get(group)

    @property
    def deadline(self) -> float:
        """When restoring ends (monotonic seconds): groups not back by then are 404."""
        return self._deadline

    @property
    def dialogs_until(self) -> float:
        """Until when unknown dialogs get 503 (monotonic seconds)."""
        return self._dialogs_until
