"""Replicating members' dialogs to another server (the sender side), sans-I/O.

A server that crashes (SIGKILL, OOM, a lost node) takes its members' dialogs
with it unless another live server knows them. So every server copies the
dialog identity of each of its members (RFC 3261 12: Call-ID, local and
remote tags and URIs, remote target, route set, CSeq both ways, transport,
whether the member's UA announced Replaces, RFC 3891 6) to one *holder* per
group: a node's holder is the group's root (the main server), the root's is
the first other active server of the group's route table (its *buddy*).

`Outbox` decides what to send and when: changes go out in batches of at
most MAX_BATCH records (one batch in flight per group), and a batch goes
every HEARTBEAT seconds even without changes, so the holder knows the sender
is alive (recovery.Replicas declares a silent sender dead). The holder's
answer names its instance: a new instance (a restarted holder) or a new
holder gets every record again. The shell (node.py) sends each `Batch` as a
signed server-to-server MESSAGE and reports the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sipfleet.node.admin_types import RouteEntry
from sipfleet.node.focus import Member

HEARTBEAT = 1.0  # seconds between batches to a holder when nothing changed
BATCH_DELAY = 0.05  # seconds a change waits, so a burst of joins shares a batch
RETRY = 1.0  # seconds after a failed batch before the next
MAX_BATCH = 32  # dialog records (and as many removals) per batch
MAX_FIELD = 2048  # characters in one string field of a record
MAX_ROUTES = 16  # Route values in one record's route set

Key = tuple[str, str]  # (Call-ID, our local tag): a member's dialog on its server


@dataclass(frozen=True, slots=True)
class DialogRecord:
    """What another server needs to bring a member back after its server died:
    the dialog as its server holds it (RFC 3261 12), `transport` the member's
    transport (udp, tcp), `supports_replaces` whether its UA announced RFC 3891
    support, `accepts_cpim` whether it listed message/cpim in Accept."""

    group: str
    aor: str
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...]
    local_cseq: int
    remote_cseq: int | None
    transport: str
    supports_replaces: bool
    accepts_cpim: bool

    @property
    def key(self) -> Key:
        return (self.call_id, self.local_tag)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "aor": self.aor,
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "local_uri": self.local_uri,
            "remote_uri": self.remote_uri,
            "remote_target": self.remote_target,
            "route_set": list(self.route_set),
            "local_cseq": self.local_cseq,
            "remote_cseq": self.remote_cseq,
            "transport": self.transport,
            "supports_replaces": self.supports_replaces,
            "accepts_cpim": self.accepts_cpim,
        }

    @classmethod
    def from_json(cls, data: Any) -> DialogRecord:
        """Read a record back; raises ValueError for a missing, mistyped or
        oversized field (a peer's input is bounded like any other)."""
        if not isinstance(data, dict):
            raise ValueError("a dialog record is an object")
        text = {
            name: _text(data, name)
            for name in (
                "group",
                "aor",
                "call_id",
                "local_tag",
                "remote_tag",
                "local_uri",
                "remote_uri",
                "remote_target",
                "transport",
            )
        }
        routes = data.get("route_set")
        if not isinstance(routes, list) or len(routes) > MAX_ROUTES:
            raise ValueError(f"route_set is a list of at most {MAX_ROUTES} values")
        remote_cseq = data.get("remote_cseq")
        if remote_cseq is not None and not _is_cseq(remote_cseq):
            raise ValueError("remote_cseq is a CSeq number or null")
        if not _is_cseq(data.get("local_cseq")):
            raise ValueError("local_cseq is a CSeq number")
        if text["transport"] not in ("udp", "tcp"):
            raise ValueError("transport is udp or tcp")
        return cls(
            route_set=tuple(_checked(r, "route_set") for r in routes),
            local_cseq=data["local_cseq"],
            remote_cseq=remote_cseq,
            supports_replaces=data.get("supports_replaces") is True,
            accepts_cpim=data.get("accepts_cpim") is True,
            **text,
        )


def _checked(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise ValueError(f"{name} is a string of at most {MAX_FIELD} characters")
    return value


def _text(data: dict[str, Any], name: str) -> str:
    value = _checked(data.get(name), name)
    if name not in ("remote_tag",) and not value:
        raise ValueError(f"{name} is empty")
    return value


def _is_cseq(value: Any) -> bool:
    """A CSeq number: an integer below 2**31 (RFC 3261 8.1.1.5)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def record_of(group: str, member: Member) -> DialogRecord:
    """The replica of `member`'s dialog in `group`."""
    d = member.dialog
    return DialogRecord(
        group=group,
        aor=member.aor,
        call_id=d.call_id,
        local_tag=d.local_tag,
        remote_tag=d.remote_tag,
        local_uri=d.local_uri,
        remote_uri=d.remote_uri,
        remote_target=d.remote_target,
        route_set=tuple(d.route_set),
        local_cseq=d.local_cseq,
        remote_cseq=d.remote_cseq,
        transport=member.peer.transport,
        supports_replaces=member.supports_replaces,
        accepts_cpim=member.accepts_cpim,
    )


@dataclass(frozen=True, slots=True)
class Batch:
    """One replication message from `origin` (instance `instance`) to the holder
    at `holder` (a shard URI): `reset` says the holder drops what it has of the
    origin's `group` first; then `upsert` records are stored and `remove` keys
    dropped."""

    origin: str
    instance: str
    group: str
    holder: str
    reset: bool
    upsert: tuple[DialogRecord, ...]
    remove: tuple[Key, ...]

    def to_bytes(self) -> bytes:
        """The MESSAGE body (application/json)."""
        return json.dumps(
            {
                "origin": self.origin,
                "instance": self.instance,
                "group": self.group,
                "reset": self.reset,
                "upsert": [r.to_json() for r in self.upsert],
                "remove": [list(k) for k in self.remove],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, body: bytes, holder: str) -> Batch:
        """Parse a MESSAGE body; raises ValueError for anything malformed or
        longer than MAX_BATCH records or removals."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"replica batch is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("a replica batch is an object")
        upsert, remove = data.get("upsert"), data.get("remove")
        if not isinstance(upsert, list) or len(upsert) > MAX_BATCH:
            raise ValueError(f"upsert is a list of at most {MAX_BATCH} records")
        if not isinstance(remove, list) or len(remove) > MAX_BATCH:
            raise ValueError(f"remove is a list of at most {MAX_BATCH} keys")
        keys: list[Key] = []
        for item in remove:
            if not isinstance(item, list) or len(item) != 2:
                raise ValueError("a removal is [Call-ID, tag]")
            keys.append((_checked(item[0], "remove"), _checked(item[1], "remove")))
        group = _text(data, "group")
        records = tuple(DialogRecord.from_json(r) for r in upsert)
        if any(r.group != group for r in records):
            raise ValueError("a record of another group in the batch")
        return cls(
            origin=_text(data, "origin"),
            instance=_text(data, "instance"),
            group=group,
            holder=holder,
            reset=data.get("reset") is True,
            upsert=records,
            remove=tuple(keys),
        )


def holder_of(server: str, entries: Iterable[RouteEntry]) -> RouteEntry | None:
    """Who keeps `server`'s replicas of a group with route table `entries`
    (entry 0 is the root): the root for any other server; for the root, the
    first other active entry (else the first other one). None when `server`
    is alone in the group, or not in it."""
    table = list(entries)
    if not table or all(e.server != server for e in table):
        return None
    if table[0].server != server:
        return table[0]
    others = [e for e in table[1:] if e.server != server]
    active = [e for e in others if e.state == "active"]
    chosen = active or others
    return chosen[0] if chosen else None


@dataclass(slots=True)
class _GroupOut:
    holder: str | None = None
    holder_instance: str | None = None
    records: dict[Key, DialogRecord] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)
    gone: set[Key] = field(default_factory=set)
    reset: bool = True
    in_flight: Batch | None = None
    next_send: float = 0.0


class Outbox:
    """What this server (`origin`, running as `instance`) still has to tell each
    group's holder. Times are the caller's monotonic seconds."""

    def __init__(self, origin: str, instance: str) -> None:
        self.origin = origin
        self.instance = instance
        self._groups: dict[str, _GroupOut] = {}
        self._releases: list[Batch] = []

    def _group(self, group: str) -> _GroupOut:
        return self._groups.setdefault(group, _GroupOut())

    def put(self, record: DialogRecord, now: float) -> None:
        """A member joined (or its dialog changed): replicate it soon."""
        g = self._group(record.group)
        g.records[record.key] = record
        g.gone.discard(record.key)
        g.dirty.add(record.key)
        g.next_send = min(g.next_send, now + BATCH_DELAY)

    def drop(self, group: str, key: Key, now: float) -> None:
        """A member left: tell the holder soon."""
        g = self._group(group)
        if g.records.pop(key, None) is None:
            return
        g.dirty.discard(key)
        g.gone.add(key)
        g.next_send = min(g.next_send, now + BATCH_DELAY)

    def forget_group(self, group: str) -> None:
        """The group's shard is gone here: its holder gets an empty reset."""
        self.set_holder(group, None, 0.0)
        self._groups.pop(group, None)

    def set_holder(self, group: str, holder: str | None, now: float) -> None:
        """The group's holder (a shard URI) from the current route table; a new
        holder gets every record, the old one an empty reset (so it stops
        watching us for that group and never takes a living member over)."""
        g = self._group(group)
        if g.holder == holder:
            return
        if g.holder is not None:
            self._releases.append(Batch(self.origin, self.instance, group, g.holder, True, (), ()))
        g.holder, g.holder_instance = holder, None
        self._resend(g, now)

    @staticmethod
    def _resend(g: _GroupOut, now: float) -> None:
        g.reset, g.dirty, g.gone = True, set(g.records), set()
        g.in_flight = None
        g.next_send = now

    def due(self, now: float) -> list[Batch]:
        """The batches to send now (each group's next one, if it has none in flight)."""
        out, self._releases = self._releases, []
        for group, g in self._groups.items():
            if g.holder is None or g.in_flight is not None or g.next_send > now:
                continue
            upsert = [g.records[k] for k in sorted(g.dirty)[:MAX_BATCH]]
            remove = sorted(g.gone)[:MAX_BATCH]
            g.dirty.difference_update(r.key for r in upsert)
            g.gone.difference_update(remove)
            g.in_flight = Batch(
                self.origin, self.instance, group, g.holder, g.reset, tuple(upsert), tuple(remove)
            )
            g.reset = False
            out.append(g.in_flight)
        return out

    def answered(self, batch: Batch, holder_instance: str | None, now: float) -> None:
        """The holder took `batch` (`holder_instance` from its answer; None for a
        failure or timeout, which resends everything after RETRY)."""
        g = self._groups.get(batch.group)
        if g is None or g.in_flight is not batch:
            return  # the group went away, or a new holder made it obsolete
        g.in_flight = None
        if holder_instance is None:
            self._resend(g, now + RETRY)
            return
        if g.holder_instance not in (None, holder_instance):
            self._resend(g, now)  # a restarted holder: it lost what we sent
        g.holder_instance = holder_instance
        if g.dirty or g.gone:
            g.next_send = now
        else:
            g.next_send = now + HEARTBEAT

    def next_deadline(self) -> float | None:
        """When `due` next has something (None when nothing is pending)."""
        times = [
            g.next_send
            for g in self._groups.values()
            if g.holder is not None and g.in_flight is None
        ]
        if self._releases:
            times.append(float("-inf"))
        return min(times, default=None)

    def records(self, group: str) -> int:
        """How many dialogs of `group` are replicated (or about to be)."""
        g = self._groups.get(group)
        return 0 if g is None else len(g.records)
