"""Crash recovery's asyncio shell: replicating dialogs and bringing orphans back.

The decisions are pure: replicas.Outbox (what to send to whom, when) and
recovery.Replicas (what this server holds, who died). This shell

- sends each replicas.Batch as a signed server-to-server MESSAGE
  (X-Sipfleet-Kind: replica, application/json) to the holder's shard URI
  and hands the holder's answer (its instance in X-Sipfleet-Instance) back;
- answers peers' batches: 200 with our instance, 400 for a malformed one,
  410 Gone to an origin instance already declared dead (it then lets its
  members of the group go without BYE: their dialogs live on here), 503 when
  the store is full;
- brings each orphaned member back into this server's shard of its group:
  an INVITE with Replaces naming the dead dialog (RFC 3891 3) when its UA
  announced Replaces, else a re-INVITE inside the dead dialog (RFC 3261 14,
  12.2.1.1) from this server, whose Contact makes it the member's new remote
  target. Outcomes are counted in `sipfleet_node_rejoins_total`;
- sends a member of a dead node, once back, the group messages that reached
  this server since the node's last batch (recovery.History), one at a time;
- keeps the hosted file (restore.Hosted: this server's groups and member
  counts, rewritten within HOSTED_PERIOD of a change, at once when a shard
  comes or goes) and, when it finds one at start (a restart of the same
  Pod; else a new Pod's expected-groups file from the operator), refuses
  what its lost groups and dialogs get with 503 meanwhile
  (restore.Restoring) and counts the members nobody brought back: its
  holder's answer to its first batch of a group says how many of them it
  held (X-Sipfleet-Held); a group without a holder (alone on the main
  server) had none held. The count goes to the shard's `lost` (the
  operator posts it as a `MembersLost` Event) and to
  `sipfleet_node_unrecovered_members_total`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from pathlib import Path
from typing import Protocol

from sipfleet.node.clock import CoreClock
from sipfleet.node.focus import Member, Shard, focus_contact, peer_of, user_of
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.recovery import (
    CSEQ_JUMP,
    DeclaredDead,
    History,
    Orphaned,
    ReplicaFull,
    Replicas,
    rejoin_method,
)
from sipfleet.node.replicas import (
    BATCH_DELAY,
    Batch,
    DialogRecord,
    Outbox,
    holder_of,
    record_of,
)
from sipfleet.node.restore import Hosted, Restoring
from sipfleet.node.routes import RoutingTable
from sipfleet.node.s2s import KIND, Envelope
from sipfleet.node.sip import SipParseError, SipResponse
from sipfleet.node.sip.dialog import Dialog
from sipfleet.node.sip.ids import random_hex
from sipfleet.node.sip.message import HeaderBlock
from sipfleet.node.sip.replaces import Replaces
from sipfleet.node.sip.target import UnreachableTarget
from sipfleet.node.stack import RequestContext, ResponseCallback, SipStack
from sipfleet.node.takeover import Report, S2sSender, Takeover

log = logging.getLogger(__name__)

REPLICA = "replica"  # X-Sipfleet-Kind of a replication MESSAGE
INSTANCE = "X-Sipfleet-Instance"  # the holder's instance, in its 200
HELD = "X-Sipfleet-Held"  # in a 200 to a reset batch: dialogs held of the origin's last instance
HOSTED_PERIOD = BATCH_DELAY
"""Seconds a member change waits before the hosted file is rewritten: as long as its
replica waits, so what a restarted server had and what its holder held agree."""
JSON_TYPE = "application/json"


class RejoinHost(S2sSender, Protocol):
    """What crash recovery needs from the server (the Node)."""

    name: str
    metrics: NodeMetrics
    takeover: Takeover

    @property
    def stack(self) -> SipStack: ...
    @property
    def shards(self) -> dict[str, Shard]: ...
    @property
    def routes(self) -> RoutingTable: ...
    def now(self) -> float: ...
    def listed_elsewhere(self, group: str, aor: str, origin: str) -> bool: ...
    def add_member(self, shard: Shard, member: Member) -> None: ...
    def remove_member(self, shard: Shard, member: Member, *, bye: bool, reason: str) -> None: ...
    def deliver(
        self,
        shard: Shard,
        member: Member,
        envelope: Envelope,
        then: ResponseCallback | None = None,
    ) -> None: ...


class CrashRecovery:
    """Replicates this server's members and recovers dead peers' members."""

    def __init__(
        self, host: RejoinHost, hosted_file: str = "", expected_groups_file: str = ""
    ) -> None:
        self._host = host
        self.instance = random_hex(8)  # a new one each time the process starts
        self.outbox = Outbox(host.name, self.instance)
        self.replicas = Replicas()
        self.history: History[Envelope] = History()
        self._clocks: list[CoreClock] = []
        self._hosted = Path(hosted_file) if hosted_file else None
        self._expected = Path(expected_groups_file) if expected_groups_file else None
        self._write_at: float | None = None
        self.restoring: Restoring | None = None
        """Set while this process restores what a previous one in the same Pod hosted
        (in a new Pod: what the operator expects it to host)."""
        self._settle_at: float | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the hosted file a previous process left (then we are restoring), arm
        the timers."""
        self.restoring = self._read_hosted(self._host.now())
        self._clocks = [
            CoreClock(loop, self.outbox.next_deadline, lambda now: self._send()),
            CoreClock(loop, self.replicas.next_deadline, self._watch),
            CoreClock(loop, lambda: self._write_at, self._write_hosted),
            CoreClock(loop, lambda: self._settle_at, self._settle),
        ]
        self._changed(now=True)
        self.routes_changed()

    def close(self) -> None:
        """Stop the timers; the hosted file gets the last member counts (a graceful
        exit's moves are not counted as lost after a restart)."""
        for clock in self._clocks:
            clock.close()
        if self._clocks:
            self._write_hosted(self._host.now())

    def _rearm(self) -> None:
        for clock in self._clocks:
            clock.rearm()

    # ---- the sender side ----------------------------------------------------------------
    def joined(self, shard: Shard, member: Member) -> None:
        """`member` joined (or refreshed its dialog in) `shard`: replicate it."""
        self.outbox.put(record_of(shard.group, member), self._host.now())
        self._changed(now=False)
        self._rearm()

    def left(self, shard: Shard, member: Member) -> None:
        self.outbox.drop(shard.group, member.key, self._host.now())
        self._changed(now=False)
        self._rearm()

    def routes_changed(self) -> None:
        """The route table or our shards changed: each shard's holder may have."""
        host, now = self._host, self._host.now()
        for group in host.shards:
            holder = holder_of(host.name, host.routes.entries(group))
            self.outbox.set_holder(group, None if holder is None else holder.uri, now)
            if self.restoring is not None:
                self.restoring.restored(group, now)
        if self.restoring is not None and now < self.restoring.dialogs_until:
            self._settle_at = self.restoring.dialogs_until
        self._changed(now=True)
        self._rearm()

    def shard_deleted(self, group: str) -> None:
        self.outbox.forget_group(group)
        self.history.forget(group)
        self._changed(now=True)
        self._rearm()

    def seen(self, envelope: Envelope) -> None:
        """A group message reached our shard: kept for members brought back later."""
        self.history.seen(envelope.group, envelope, self._host.now())

    def _send(self) -> None:
        host = self._host
        for batch in self.outbox.due(host.now()):
            host.send_s2s(
                "MESSAGE",
                batch.holder,
                [(KIND, REPLICA), ("Content-Type", JSON_TYPE)],
                batch.to_bytes(),
                callback=self._answered(batch),
            )

    def _answered(self, batch: Batch) -> ResponseCallback:
        def done(response: SipResponse | None) -> None:
            if response is not None and response.status < 200:
                return
            instance = None
            if response is not None and response.status == 200:
                instance = response.headers.get(INSTANCE)
                held = response.headers.get(HELD)
                if batch.reset and held is not None and held.isdigit():
                    self._unrecovered(batch.group, int(held))
            if response is not None and response.status == 410:
                self._taken_over(batch.group)
            self.outbox.answered(batch, instance, self._host.now())
            self._rearm()

        return done

    def _taken_over(self, group: str) -> None:
        """Our holder declared us dead and took our members of `group` over (we were
        only slow): let them go without BYE, their dialogs live on there."""
        shard = self._host.shards.get(group)
        if shard is None:
            return
        log.warning(
            "declared dead by our holder: %d members of %s taken over", len(shard.members), group
        )
        for member in list(shard.members.values()):
            self._host.remove_member(shard, member, bye=False, reason="taken_over")

    # ---- the hosted file and the restarted side --------------------------------------
    def _changed(self, *, now: bool) -> None:
        """Our groups changed (`now`: the file is rewritten before this returns, so a
        shard the operator was answered for survives a SIGKILL right after the answer)
        or member counts did (rewritten within HOSTED_PERIOD)."""
        if self._hosted is None:
            return
        if now:
            self._write_hosted(self._host.now())
            return
        at = self._host.now() + HOSTED_PERIOD
        self._write_at = at if self._write_at is None else min(self._write_at, at)

    def _write_hosted(self, now: float) -> None:
        """Rewrite the hosted file (write a new one, then rename: never half-written):
        our shards, and the groups a restart is still waiting for."""
        self._write_at = None
        if self._hosted is None:
            return
        groups = {} if self.restoring is None else self.restoring.waiting(now)
        groups.update({g: len(s.members) for g, s in self._host.shards.items()})
        hosted = Hosted(groups)
        partial = self._hosted.with_name(self._hosted.name + ".new")
        try:
            partial.write_bytes(hosted.to_bytes())
            os.replace(partial, self._hosted)
        except OSError as exc:
            log.warning("cannot write %s: %s (a restart will not know its groups)", partial, exc)

    def _read_hosted(self, now: float) -> Restoring | None:
        """What a previous process in this Pod hosted (a restart), else the groups the
        operator expects a new Pod to host (its expected-groups file); None: a fresh
        server."""
        for path, why in ((self._hosted, "restarted"), (self._expected, "new Pod")):
            hosted = _read_groups(path)
            if hosted is None:
                continue
            restoring = Restoring(hosted, self._host.name, now)
            log.warning(
                "%s: restoring %d groups (%d members) for up to %.0f s",
                why,
                len(hosted.members),
                sum(hosted.members.values()),
                restoring.deadline - now,
            )
            return restoring
        return None

    def _unrecovered(self, group: str, held: int) -> None:
        """Count the members of `group` the previous process had beyond the `held` its
        holder brought back (each group once)."""
        restoring = self.restoring
        lost = None if restoring is None else restoring.unrecovered(group, held)
        shard = self._host.shards.get(group)
        if not lost or shard is None:
            return
        log.warning(
            "%d members of %s were lost with the previous process: its holder held %d",
            lost,
            group,
            held,
        )
        shard.lost += lost
        self._host.metrics.unrecovered.labels(group).inc(lost)

    def _settle(self, now: float) -> None:
        """Unknown dialogs are no longer refused (restore.DIALOG_GRACE after the last
        group came back): a group whose route table lists this server alone, so it has
        no holder, had nobody to bring its members back: count them (a table not
        listing us yet says nothing). At the restore deadline, stop restoring."""
        restoring, host = self.restoring, self._host
        if restoring is None:
            return
        for group in list(host.shards):
            entries = host.routes.entries(group)
            alone = bool(entries) and all(e.server == host.name for e in entries)
            if alone and restoring.had(group) is not None:
                self._unrecovered(group, 0)
        if now < restoring.deadline:
            self._settle_at = restoring.deadline
        else:
            self._settle_at, self.restoring = None, None

    # ---- the holder side ----------------------------------------------------------------
    def on_replica(self, ctx: RequestContext) -> None:
        """A peer's replication MESSAGE (already authenticated)."""
        host = self._host
        try:
            batch = Batch.from_bytes(ctx.request.body, "")
            orphans = self.replicas.on_batch(batch, host.now())
        except ValueError as exc:
            reason = str(exc)[:200].replace('"', "'")  # a quoted-string (RFC 3261 20.43)
            ctx.respond(400, [("Warning", f'399 sipfleet "{reason}"')])
            return
        except DeclaredDead:
            ctx.respond(410, reason="Declared Dead")
            return
        except ReplicaFull:
            ctx.respond(503, [("Retry-After", "5")], reason="Replica Store Full")
            return
        headers = [(INSTANCE, self.instance)]
        if batch.reset:
            headers.append((HELD, str(self.replicas.previous(batch.origin, batch.group))))
        ctx.respond(200, headers)
        host.metrics.replicas_held.set(self.replicas.total)
        self._recover(orphans)
        self._rearm()

    def _watch(self, now: float) -> None:
        self._recover(self.replicas.tick(now))
        self._host.metrics.replicas_held.set(self.replicas.total)

    def _recover(self, orphans: list[Orphaned]) -> None:
        """Bring each orphan back into our shard of its group, even beyond the shard's
        capacity (refusing it would lose it; a member taken beyond capacity is counted
        in sipfleet_node_rejoined_over_capacity_total, joins meanwhile go elsewhere,
        and with transfer.mode refer the operator moves the excess on)."""
        for orphaned in orphans:
            log.warning(
                "%s (%s) %s: bringing back %d members",
                orphaned.origin,
                orphaned.instance,
                orphaned.reason,
                len(orphaned.records),
            )
            self._host.metrics.orphaned.labels(orphaned.reason).inc(len(orphaned.records))
            for record in orphaned.records:
                if not self._host.listed_elsewhere(record.group, record.aor, orphaned.origin):
                    self._rejoin(record, self._away_since(record.group, orphaned))

    def _away_since(self, group: str, orphaned: Orphaned) -> float | None:
        """Since when the group's messages may have missed the orphans: the dead
        server's last sign of life, when it was below us in the tree (we forwarded
        messages to it). None when it was the root: every message we have came
        through it, and it delivered to its own members as it forwarded."""
        entries = self._host.routes.entries(group)
        if entries and entries[0].server == orphaned.origin:
            return None
        return orphaned.last_seen

    def _rejoin(self, record: DialogRecord, away_since: float | None) -> None:
        """Bring one member back; once back it gets the group messages that came
        since `away_since` (None: none)."""
        method = rejoin_method(record)
        counter = self._host.metrics.rejoins
        shard = self._host.shards.get(record.group)
        if shard is None:
            counter.labels(method, "failed").inc()
            log.warning("no shard of %s here: %s lost", record.group, record.aor)
            return

        def report(status: int, reason: str) -> None:
            outcome = "rejoined" if status == 200 else "failed"
            counter.labels(method, outcome).inc()
            if outcome == "failed":
                log.warning("%s not brought back: %d %s", record.aor, status, reason)
                return
            if len(shard.members) > shard.capacity:  # taken anyway: counted (see _recover)
                self._host.metrics.over_capacity.labels(shard.group).inc()
            member = shard.by_aor.get(record.aor)
            if member is not None and away_since is not None:
                self._replay(shard, member, away_since)

        try:
            if method == "replaces":
                replaces = Replaces(record.call_id, record.remote_tag, record.local_tag)
                self._host.takeover.invite_with_replaces(
                    shard,
                    record.aor,
                    record.remote_target,
                    record.route_set,
                    replaces,
                    report,
                )
            else:
                self._reinvite(shard, record, report)
        except (SipParseError, UnreachableTarget) as exc:
            report(502, f"unreachable: {exc}")

    def _replay(self, shard: Shard, member: Member, since: float) -> None:
        """The group messages `member` may have missed while it was away (some may
        have reached it before its server died: duplicates), one at a time, each
        after the previous one's 2xx, in the order they came."""
        host = self._host
        missed = deque(
            e for e in self.history.since(shard.group, since, host.now()) if e.sender != member.aor
        )
        host.metrics.replayed.inc(len(missed))

        def send() -> None:
            if missed and member.key in shard.members:
                host.deliver(shard, member, missed.popleft(), answered)

        def answered(response: SipResponse | None) -> None:
            if response is not None and response.status < 300:
                send()  # a failure stops here: the delivery path counts it

        send()

    def _reinvite(self, shard: Shard, record: DialogRecord, report: Report) -> None:
        """Adopt the dead dialog: a re-INVITE in it (RFC 3261 14) whose Contact is
        this server, with a local CSeq past any the dead server can have used
        (RFC 3261 12.2.2 lets the member accept the gap), and no offer (the member
        offers in its 2xx, we answer in the ACK: RFC 3264 5). Raises SipParseError
        or UnreachableTarget for a next hop this server cannot send to."""
        host = self._host
        dialog = Dialog(
            record.call_id,
            record.local_tag,
            record.remote_tag,
            record.local_uri,
            record.remote_uri,
            record.remote_target,
            list(record.route_set),
            local_cseq=record.local_cseq + CSEQ_JUMP,
            remote_cseq=record.remote_cseq,
        )
        via = peer_of(dialog.next_hop, record.transport)
        peer = host.stack.target_of(dialog.next_hop, via)
        dialog.local_contact = focus_contact(host.stack.local_uri(user_of(shard.uri), peer))
        member = Member(
            record.aor,
            dialog,
            lambda uri: host.stack.target_of(uri, peer),
            record.supports_replaces,
            accepts_cpim=record.accepts_cpim,
        )
        invite = member.request(
            "INVITE",
            host.stack.sent_by(peer),
            HeaderBlock([("Supported", "replaces"), ("Allow", "INVITE, ACK, BYE, MESSAGE")]),
        )

        def answered(response: SipResponse | None) -> None:
            if response is not None and response.status < 200:
                return
            if response is None or response.status >= 300:
                status = 408 if response is None else response.status
                report(status, "Request Timeout" if response is None else response.reason)
                return
            contact = response.contact
            if contact is not None:  # a 2xx to a target refresh (RFC 3261 12.2.1.2)
                dialog.remote_target = contact.uri
            host.takeover.ack(member, response)
            if member.key not in shard.members:
                host.add_member(shard, member)
            report(200, "OK")

        host.stack.send_request(invite, member.peer, answered)


def _read_groups(path: Path | None) -> Hosted | None:
    """The groups a hosted or expected-groups file lists; None when there is no file,
    it is empty (an absent Pod annotation) or it is not one (logged)."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    if not data.strip():
        return None
    try:
        return Hosted.from_bytes(data)
    except ValueError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
