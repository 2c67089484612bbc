"""Keeping other servers' replicas and noticing when one of them died, sans-I/O.

The holder side of replicas.py. `Replicas` stores the dialog records each
origin server sends (replicas.Batch) and declares an origin's members
*orphaned* when

- the origin restarted: a batch comes from the same server name with a new
  instance (its container restarted after a SIGKILL or an OOM kill: the new
  process knows none of its old dialogs), or
- the origin fell silent: no batch for DEAD_AFTER seconds although it sends
  one every replicas.HEARTBEAT (its Pod or node is gone).

For each orphan, `rejoin_method` says how the holder brings it back (the
shell, rejoin.py, sends the requests): an INVITE with Replaces (RFC 3891 3)
naming the dead dialog when the member's UA announced Replaces, which swaps
the dead dialog for a new one with the holder; otherwise an in-dialog
re-INVITE in the dead dialog itself (RFC 3261 12.2.1.1, 14: a target refresh
whose Contact is the holder), which any UA follows.

An origin declared dead that speaks again with the same instance (it was
only slow: a false alarm) is told so (`DeclaredDead`): its members have been
taken over, and it must let them go without BYE (their dialogs live on at
the holder).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from sipfleet.node.replicas import HEARTBEAT, Batch, DialogRecord, Key

DEAD_AFTER = 3 * HEARTBEAT  # seconds without a batch after which an origin is dead
MAX_RECORDS = 20000  # records kept for all origins together (a bounded store)
MAX_DEAD = 256  # origin instances remembered as declared dead
CSEQ_JUMP = 10000
"""How far an adopted dialog's local CSeq jumps: the replica's CSeq lags the
dead server's by the requests it sent since its last batch, and the member
rejects a CSeq not above its last (RFC 3261 12.2.2 accepts gaps)."""

HISTORY = 64  # group messages kept per group for members coming back
HISTORY_SECONDS = 30.0  # how long a group message is kept for them

OrphanReason = Literal["restarted", "silent"]
T = TypeVar("T")
RejoinMethod = Literal["replaces", "reinvite"]


class ReplicaFull(Exception):
    """The store would exceed MAX_RECORDS (answered 503)."""


class DeclaredDead(Exception):
    """The batch's origin instance was declared dead and its members taken over
    (answered 410 Gone)."""


@dataclass(frozen=True, slots=True)
class Orphaned:
    """The members of `origin`'s instance `instance` have no server any more;
    `last_seen` is when its last batch came (the caller's monotonic seconds):
    group messages since then may not have reached them."""

    origin: str
    instance: str
    reason: OrphanReason
    records: tuple[DialogRecord, ...]
    last_seen: float


@dataclass(slots=True)
class _Origin:
    instance: str
    last_seen: float
    groups: dict[str, dict[Key, DialogRecord]] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(g) for g in self.groups.values())

    def all(self) -> tuple[DialogRecord, ...]:
        return tuple(r for g in self.groups.values() for r in g.values())


class Replicas:
    """The replicas this server holds, by origin server. Times are the caller's
    monotonic seconds."""

    def __init__(self) -> None:
        self._origins: dict[str, _Origin] = {}
        self._dead: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._previous: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._total = 0

    def on_batch(self, batch: Batch, now: float) -> list[Orphaned]:
        """Store a batch; returns the orphans of the origin's previous instance if
        this one is new. Raises DeclaredDead for an instance already taken over,
        ReplicaFull when the store would exceed MAX_RECORDS (nothing applied)."""
        if (batch.origin, batch.instance) in self._dead:
            raise DeclaredDead(f"{batch.origin} ({batch.instance}) was declared dead")
        out: list[Orphaned] = []
        known = self._origins.get(batch.origin)
        if known is not None and known.instance != batch.instance:
            orphaned = self._orphan(batch.origin, "restarted")
            out += [orphaned] if orphaned.records else []
            known = None
        origin = known or _Origin(batch.instance, now)
        records = {} if batch.reset else dict(origin.groups.get(batch.group, {}))
        for key in batch.remove:
            records.pop(key, None)
        for record in batch.upsert:
            records[record.key] = record
        before = len(origin.groups.get(batch.group, {}))
        total = self._total - before + len(records)
        if total > MAX_RECORDS:
            raise ReplicaFull(f"more than {MAX_RECORDS} replicated dialogs")
        self._total = total
        origin.last_seen = now
        if records:
            origin.groups[batch.group] = records
        else:
            origin.groups.pop(batch.group, None)
        if batch.reset and not records and not origin.groups:
            self._origins.pop(batch.origin, None)  # released: nothing of it to watch
        else:
            self._origins[batch.origin] = origin
        return out

    def tick(self, now: float) -> list[Orphaned]:
        """Declare origins silent for DEAD_AFTER seconds dead; their orphans."""
        silent = [n for n, o in self._origins.items() if o.last_seen + DEAD_AFTER <= now]
        return [o for name in silent if (o := self._orphan(name, "silent")).records]

    def next_deadline(self) -> float | None:
        return min((o.last_seen + DEAD_AFTER for o in self._origins.values()), default=None)

    def _orphan(self, name: str, reason: OrphanReason) -> Orphaned:
        origin = self._origins.pop(name)
        self._total -= origin.count()
        self._previous.pop(name, None)
        self._previous[name] = {group: len(g) for group, g in origin.groups.items()}
        while len(self._previous) > MAX_DEAD:
            self._previous.popitem(last=False)
        if not origin.count():
            return Orphaned(name, origin.instance, reason, (), origin.last_seen)  # nobody
        self._dead[(name, origin.instance)] = None
        while len(self._dead) > MAX_DEAD:
            self._dead.popitem(last=False)
        return Orphaned(name, origin.instance, reason, origin.all(), origin.last_seen)

    def previous(self, origin: str, group: str) -> int:
        """How many dialogs of `group` this server held of `origin`'s last instance
        declared dead (restarted or silent): the members it took charge of. 0 when
        it held none (it restarted itself since, or never held any): a restarted
        origin counts the members it had beyond that as brought back by nobody."""
        return self._previous.get(origin, {}).get(group, 0)

    def held(self) -> dict[str, int]:
        """Origin server -> how many of its dialogs this server holds."""
        return {name: o.count() for name, o in self._origins.items()}

    @property
    def total(self) -> int:
        return self._total


def rejoin_method(record: DialogRecord) -> RejoinMethod:
    """How to bring an orphaned member back: Replaces (RFC 3891) when its UA
    announced support, else a re-INVITE in its dialog (RFC 3261 14)."""
    return "replaces" if record.supports_replaces else "reinvite"


class History(Generic[T]):
    """The last HISTORY group messages of each group (none older than
    HISTORY_SECONDS), so a member brought back gets those sent while it was away
    (the ones its dead server may not have delivered)."""

    def __init__(self) -> None:
        self._groups: dict[str, deque[tuple[float, T]]] = {}

    def seen(self, group: str, item: T, now: float) -> None:
        """A group message arrived at `now` (monotonic seconds)."""
        kept = self._groups.get(group)
        if kept is None:  # not setdefault: that would build a deque on every message
            kept = self._groups[group] = deque(maxlen=HISTORY)
        kept.append((now, item))

    def since(self, group: str, start: float, now: float) -> list[T]:
        """The group's messages that arrived at or after `start`, oldest first."""
        oldest = max(start, now - HISTORY_SECONDS)
        return [item for at, item in self._groups.get(group, ()) if at >= oldest]

    def forget(self, group: str) -> None:
        self._groups.pop(group, None)
