"""Moving members to another shard (flow 2), at a bounded rate: pure logic.

`refer`: an in-dialog REFER to the member (RFC 3515) with Refer-To the target
shard; the member INVITEs the target and reports in NOTIFY message/sipfrag
(none if it answers Refer-Sub: false, RFC 4488). `refer-to-server`: a signed
REFER to the target server, which INVITEs the member with Replaces (RFC 3891)
naming the member's dialog here, through the member's route set, and reports
back in NOTIFY (takeover.py is that side). Only members that announced
`Supported: replaces` get such an INVITE; the others are sent the REFER instead
(RFC 3891 6: a UA without Replaces would take it as a new call).

A member is let go here (BYE) only once the target server's roster, which
comes down the distribution tree, lists it: messages sent meanwhile are
delivered here (counted in sipfleet_node_duplicate_deliveries_total, since the
new server may deliver them too), so none is lost. A 2xx sipfrag without the
roster confirmation lets the member go after CONFIRM_GRACE seconds.

Sans-I/O, like sip/transaction.py: every call takes `now` (seconds on the
shell's monotonic clock) and returns actions; the shell performs them, feeds
the answers back (`refer_answered`, `on_notify`, ...) and calls `tick(now)` at
`next_deadline()`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from sipfleet.node.admin_types import Conflict, TransferRequest, TransferState
from sipfleet.node.focus import Member, Shard
from sipfleet.node.s2s import MEMBER, MEMBER_ROUTE
from sipfleet.node.schedule import Schedule
from sipfleet.node.sip import SipParseError
from sipfleet.node.sip.ids import new_call_id
from sipfleet.node.sip.replaces import Replaces
from sipfleet.node.sip.sipfrag import parse_sipfrag

TRANSFER_TIMEOUT = 32.0  # seconds from the REFER to the move confirmed
CONFIRM_GRACE = 2.0  # seconds a 2xx sipfrag waits for the roster to confirm
FINAL = ("moved", "failed")
Outcome = Literal["moved", "failed"]


@dataclass(eq=False)
class Item:
    """One member to move."""

    member: Member
    shard: Shard
    state: str = "pending"  # pending -> referred -> moved | failed
    call_id: str = ""  # the dialog whose NOTIFYs report on the REFER


@dataclass(eq=False)
class Job:
    """One transfer request and its progress."""

    id: str
    request: TransferRequest
    items: list[Item]
    started: float
    next: int = 0  # index of the next item to begin
    moved: int = 0
    failed: int = 0
    state: Literal["running", "done", "failed"] = "running"

    def progress(self) -> TransferState:
        """The job as the admin API shows it."""
        r = self.request
        return TransferState(
            id=self.id,
            group=r.group,
            target=r.target,
            method=r.method,
            rate=r.rate,
            requested=len(self.items),
            moved=self.moved,
            failed=self.failed,
            state=self.state,
            pending=sum(1 for i in self.items if i.state not in FINAL),
        )


# ---- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendRefer:
    """Send REFER in the member's dialog (Refer-To `target`, Referred-By the shard);
    report its final response with `refer_answered(item, ...)`."""

    item: Item
    target: str


@dataclass(frozen=True, slots=True)
class SendServerRefer:
    """Send a signed REFER to the server of shard `target`: Refer-To the member's
    remote target (as the member reaches us) with `replaces`, these further header
    fields, this Call-ID and our Contact for its NOTIFY; report its final response
    with `refer_answered(item, ...)`."""

    item: Item
    target: str
    call_id: str
    replaces: Replaces
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Release:
    """The member has moved: end its dialog here (BYE) and drop it from its shard."""

    item: Item


@dataclass(frozen=True, slots=True)
class Finished:
    """A member's transfer ended (`moved` or `failed`): count it."""

    outcome: Outcome


TransferAction = SendRefer | SendServerRefer | Release | Finished
_Key = tuple[str, object]  # ("pace", job) | ("timeout" | "confirm" | "forget", item)


class Transfers:
    """Every transfer this server runs. `host` names this server in Call-IDs."""

    def __init__(self, host: str) -> None:
        self._host = host
        self._jobs: dict[str, Job] = {}
        self._by_call: dict[str, Item] = {}
        self._by_member: dict[Member, tuple[Job, Item]] = {}
        self._jobs_of: dict[Item, Job] = {}
        self._timers: Schedule[_Key] = Schedule()

    # ---- admin -------------------------------------------------------------------------
    def start(self, request: TransferRequest, shard: Shard | None, now: float) -> TransferState:
        """Begin moving members of `shard` (this server's shard of the group) as
        `request` says; the first REFER goes out at the next `tick`. Raises
        LookupError without a shard, ValueError for a bad target or unknown
        members, Conflict when no member is left to move."""
        if shard is None:
            raise LookupError(f"no shard of {request.group} on this server")
        if request.target == shard.uri:
            raise ValueError("target is this server's own shard")
        free = [
            m for m in shard.members.values() if m.state == "joined" and m not in self._by_member
        ]
        if request.members is not None:
            by_aor = {m.aor: m for m in free}
            unknown = [a for a in request.members if a not in by_aor]
            if unknown:
                raise ValueError(f"not members here (or already moving): {', '.join(unknown)}")
            chosen = [by_aor[a] for a in request.members]
        else:
            chosen = free[: request.count]
        if not chosen:
            raise Conflict("no members left to move")
        job = Job(secrets.token_hex(6), request, [Item(m, shard) for m in chosen], now)
        self._jobs[job.id] = job
        for item in job.items:
            self._by_member[item.member] = (job, item)
            self._jobs_of[item] = job
        self._timers.arm(("pace", job), now)
        return job.progress()

    def get(self, transfer_id: str) -> TransferState:
        """A job's progress. Raises LookupError for an unknown id."""
        job = self._jobs.get(transfer_id)
        if job is None:
            raise LookupError(f"no transfer {transfer_id}")
        return job.progress()

    def all(self) -> list[TransferState]:
        """Every job's progress."""
        return [job.progress() for job in self._jobs.values()]

    # ---- time --------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def tick(self, now: float) -> list[TransferAction]:
        """Fire what is due: paced REFERs (against the job's start, so work and loop
        latency do not add up: asked 200/s, moved 173/s when each step slept a full
        interval), transfer timeouts, confirmation grace."""
        out: list[TransferAction] = []
        for kind, target in self._timers.due(now):
            if kind == "pace":
                assert isinstance(target, Job)
                out += self._pace(target, now)
                continue
            assert isinstance(target, Item)
            if kind == "timeout":
                out += self._fail(target, now)
            elif kind == "confirm":
                out += self._confirm(target, now)
            elif self._by_call.get(target.call_id) is target:  # "forget"
                del self._by_call[target.call_id]
        return out

    def _pace(self, job: Job, now: float) -> list[TransferAction]:
        interval = 1.0 / job.request.rate
        out: list[TransferAction] = []
        while job.next < len(job.items) and job.started + job.next * interval <= now:
            item = job.items[job.next]
            job.next += 1
            if item.state != "pending":
                continue
            if item.member.key in item.shard.members:
                out += self._begin(job, item, now)
            else:
                out += self._fail(item, now)
        if job.next < len(job.items):
            self._timers.arm(("pace", job), job.started + job.next * interval)
        return out

    def _begin(self, job: Job, item: Item, now: float) -> list[TransferAction]:
        member, target = item.member, job.request.target
        member.state = "transferring"
        item.state = "referred"
        self._timers.arm(("timeout", item), now + TRANSFER_TIMEOUT)
        dialog = member.dialog
        if job.request.method == "refer" or not member.supports_replaces:
            item.call_id = dialog.call_id
            self._by_call[item.call_id] = item
            return [SendRefer(item, target)]
        # RFC 3891: the tags as the member sees its dialog (its local tag is our remote one)
        replaces = Replaces(dialog.call_id, dialog.remote_tag, dialog.local_tag)
        item.call_id = new_call_id(self._host)
        self._by_call[item.call_id] = item
        headers = [
            (MEMBER, f"<{member.aor}>"),
            ("Referred-By", f"<{item.shard.uri}>"),
        ]
        if dialog.route_set:
            headers.append((MEMBER_ROUTE, ", ".join(dialog.route_set)))
        return [SendServerRefer(item, target, item.call_id, replaces, tuple(headers))]

    # ---- answers and reports -----------------------------------------------------------
    def refer_answered(self, item: Item, status: int | None, now: float) -> list[TransferAction]:
        """The REFER's response (`None`: it timed out); a failure fails the item."""
        if status is None or status >= 300:
            return self._fail(item, now)
        return []

    def on_notify(self, call_id: str, body: bytes, now: float) -> tuple[bool, list[TransferAction]]:
        """A NOTIFY (message/sipfrag, RFC 3515 2.4.5) in dialog `call_id`: (whether it
        is about one of our REFERs, actions). A final 2xx confirms after the grace
        unless the roster already did; a final non-2xx fails the item."""
        item = self._by_call.get(call_id)
        if item is None:
            return False, []
        try:
            status, _ = parse_sipfrag(body)
        except SipParseError:
            return True, []
        if item.state in FINAL or status < 200:
            return True, []
        if status >= 300:
            return True, self._fail(item, now)
        if item.member.key not in item.shard.members:
            return True, self._confirm(item, now)
        self._timers.arm(("confirm", item), now + CONFIRM_GRACE)
        return True, []

    def on_roster(self, uri: str, members: frozenset[str], now: float) -> list[TransferAction]:
        """A server reported its shard `uri`: members it lists have arrived there."""
        out: list[TransferAction] = []
        for job, item in list(self._by_member.values()):
            if job.request.target == uri and item.member.aor in members:
                out += self._confirm(item, now)
        return out

    def on_member_left(self, member: Member, now: float) -> list[TransferAction]:
        """The member's dialog ended here before its REFER went out: fail it."""
        found = self._by_member.get(member)
        if found is not None and found[1].state == "pending":
            return self._fail(found[1], now)
        return []

    # ---- outcomes ----------------------------------------------------------------------
    def _confirm(self, item: Item, now: float) -> list[TransferAction]:
        if item.state in FINAL:
            return []
        return [*self._finish(item, "moved", now), Release(item)]

    def _fail(self, item: Item, now: float) -> list[TransferAction]:
        if item.state in FINAL:
            return []
        item.member.state = "joined"
        return self._finish(item, "failed", now)

    def _finish(self, item: Item, outcome: Outcome, now: float) -> list[TransferAction]:
        job = self._jobs_of.pop(item)
        item.state = outcome
        if outcome == "moved":
            job.moved += 1
        else:
            job.failed += 1
        self._timers.cancel(("timeout", item))
        self._timers.cancel(("confirm", item))
        # Late NOTIFYs about this REFER (say, the 200 sipfrag after the roster already
        # confirmed the move) are still answered 200 for a while.
        self._timers.arm(("forget", item), now + TRANSFER_TIMEOUT)
        self._by_member.pop(item.member, None)
        if all(i.state in FINAL for i in job.items):
            job.state = "failed" if job.moved == 0 and job.failed else "done"
        return [Finished(outcome)]
