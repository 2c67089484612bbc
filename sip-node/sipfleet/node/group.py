"""The group focus: shards, members, joins, leaves and the fan-out: pure logic.

A member is one INVITE dialog with this server (focus.Member, RFC 3261 12).
This module decides everything a group does with its members, without I/O:

- join (RFC 3261 13.3, RFC 3264 5 and 6): 404 for no such group, 400 without a
  SIP Contact, 403 for a Contact this server cannot send to, a 302 to the shard
  with most room when this one has none (flow 1, redirect.py), 480 when no
  shard has room (503 while this server is stopping), 415/488 for a body that
  is not an SDP offer, else 200 with the SDP answer (or an offer when the
  INVITE had none) and a new member;
- in-dialog requests (RFC 3261 12.2.2): 481 for no such dialog, 500 for a CSeq
  out of order, 403 for a refreshed remote target this server cannot reach;
- leave: a BYE (200, RFC 3261 15.1.2), a 2xx never ACKed (13.3.1.4), a
  delivery that timed out (408: BYE, the member may only be slow) or found the
  dialog gone (481, 12.2.1.2), a deleted shard (BYE), a completed transfer;
- group MESSAGE: who may post (a member, in its dialog or from its AOR), the
  envelope that goes up the distribution tree (distribution.py), and at each
  server the fan-out: every local member but the sender, each shown the sender
  in its conference's `SenderDisplay` (presentation.py);
- the roster reports the tree carries, and the redirect reservations they
  release.

Sans-I/O, like sip/transaction.py: every call takes the request (and `now`,
seconds on the shell's monotonic clock) and returns actions (`GroupAction`):
answer the request, count, send a BYE, forward along the tree, fan out. The
shell (node.py) performs them, feeds back delivery outcomes
(`delivery_answered`) and calls `tick(now)` at `next_deadline()`. Addresses the
focus writes (its Contact, a 302's Contact) and where a member's requests go
come from `Addresses`, which the shell's SIP stack implements.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from sipfleet.node.distribution import Deliver, Distribution, Forward, RosterChanged, RosterDue
from sipfleet.node.focus import (
    DROPPED,
    Member,
    Shard,
    focus_contact,
    supports_replaces,
    user_of,
)
from sipfleet.node.presentation import Presentation, SenderDisplay, accepts_cpim, present
from sipfleet.node.redirect import Join, Redirect, Reservations, decide
from sipfleet.node.routes import Groups, RoutingTable
from sipfleet.node.s2s import Envelope
from sipfleet.node.sdp import SDP_TYPE, SdpError
from sipfleet.node.sip import SipParseError, SipRequest
from sipfleet.node.sip.dialog import Dialog
from sipfleet.node.sip.ids import new_tag, random_hex
from sipfleet.node.sip.target import UnreachableTarget
from sipfleet.node.transport import Peer

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, REFER"
SUPPORTED = "replaces, norefersub"
Header = tuple[str, str]


class Addresses(Protocol):
    """How this server is reached and reaches others (the shell's SIP stack)."""

    def local_uri(self, user: str, peer: Peer) -> str:
        """`sip:user@host:port` as `peer` reaches this server (RFC 3261 12.1.1)."""
        ...

    def local_host(self, peer: Peer) -> str:
        """Our address for `peer` (for SDP `c=` and `o=`)."""
        ...

    def uri_for(self, uri: str, peer: Peer) -> str:
        """A URI of this fleet as `peer` must use it (RFC 3261 19.1.1)."""
        ...

    def target_of(self, uri: str, via: Peer) -> Peer:
        """Where requests for a URI `via` gave us go (RFC 3263 4); raises
        SipParseError or sip.target.UnreachableTarget."""
        ...


# ---- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the request being handled (RFC 3261 8.2.6): `to_tag` for a response
    that creates a dialog, `reason` to override the default reason phrase."""

    status: int
    headers: tuple[Header, ...] = ()
    body: bytes = b""
    to_tag: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Joined:
    """`member` joined `shard` here (count it, tell subscribers)."""

    shard: Shard
    member: Member


@dataclass(frozen=True, slots=True)
class Left:
    """`member` left `shard` here for `reason` (a `members_removed_total` label);
    when `bye`, end its session with a BYE in its dialog first."""

    shard: Shard
    member: Member
    reason: str
    bye: bool


@dataclass(frozen=True, slots=True)
class Redirected:
    """A join to `group` was answered 302 (count it)."""

    group: str


@dataclass(frozen=True, slots=True)
class Posted:
    """A member's group MESSAGE was taken (count it)."""

    group: str


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    """A delivery of a group message got `status` (None: no answer in time)."""

    status: int | None


@dataclass(frozen=True, slots=True)
class FanOut:
    """Send the group message `envelope` to each of `recipients` (members of
    `shard`) in its own dialog, presented as `mode` says; report each final
    response with `GroupCore.delivery_answered`."""

    shard: Shard
    envelope: Envelope
    recipients: tuple[Member, ...]
    mode: SenderDisplay

    @property
    def duplicates(self) -> int:
        """Recipients in the middle of a transfer: their new server may deliver too."""
        return sum(m.state == "transferring" for m in self.recipients)

    def sends(self) -> Iterator[tuple[Member, Presentation]]:
        """Each recipient with its presentation; the message is formatted once."""
        e = self.envelope
        delivery = present(self.mode, e.sender, e.group, e.content_type, e.body)
        for member in self.recipients:
            yield member, delivery.to(member.accepts_cpim)


GroupAction = (
    Reply | Joined | Left | Redirected | Posted | DeliveryFailed | FanOut | Forward | RosterChanged
)
"""What the shell performs; `Forward` and `RosterChanged` come from distribution.py."""
Found = tuple[Shard, Member]


class GroupCore:
    """Every group this server (`name`) hosts a shard of, or routes for.

    `tree_fanout` is the distribution tree's children per server;
    `sender_display` the presentation of shards created without their own.
    """

    def __init__(self, name: str, tree_fanout: int, sender_display: SenderDisplay) -> None:
        self.name = name
        self.sender_display = sender_display
        self.shards: dict[str, Shard] = {}
        self.routes = RoutingTable()
        self.tree = Distribution(name, tree_fanout)
        self.reservations = Reservations()
        self.draining = False
        self._by_user: dict[str, Shard] = {}
        self._groups_by_user: dict[str, str] = {}
        self._dialogs: dict[tuple[str, str], Found] = {}
        # The last request resolved and its answer: a MESSAGE is resolved twice, by
        # its admission and by on_message (0.18 us each). Cleared by _index_groups,
        # which every change of shards or routes goes through.
        self._resolved: tuple[SipRequest, tuple[str, Shard | None]] | None = None

    # ---- shards, routes, drain (the admin API) -------------------------------------------
    def ensure_shard(
        self,
        group: str,
        capacity: int,
        uri: str,
        now: float,
        sender_display: SenderDisplay | None = None,
    ) -> tuple[Shard, bool]:
        """Create the group's shard at `uri` (its URI is kept once created) or
        resize it; `sender_display`, when given, becomes its presentation. Returns
        the shard and whether it is new."""
        shard = self.shards.get(group)
        created = shard is None
        if shard is None:
            shard = Shard(group, uri, capacity)
            self.shards[group] = shard
            self._by_user[user_of(shard.uri)] = shard
            self._index_groups()
        shard.capacity = capacity
        if sender_display is not None:
            shard.sender_display = sender_display
        self.tree.schedule_roster(group, now)
        return shard, created

    def delete_shard(self, group: str, now: float) -> tuple[Shard, list[GroupAction]]:
        """End every member's session (BYE) and drop the shard; the tree learns it
        has no members here. Returns the dropped shard and the actions. Raises
        LookupError when there is no such shard."""
        shard = self.shards.get(group)
        if shard is None:
            raise LookupError(f"no shard of {group} on this server")
        out: list[GroupAction] = []
        for member in list(shard.members.values()):
            out += self.remove(shard, member, bye=True, reason="shard_deleted", now=now)
        del self.shards[group]
        self._by_user.pop(user_of(shard.uri), None)
        self._index_groups()
        out += self._report_roster(group, now, shard_gone=shard)
        return shard, out

    def put_routes(self, generation: int, groups: Groups, now: float) -> bool:
        """Take a pushed routing table; False (no change) for the generation already
        held. Raises routes.StaleGeneration for an older one."""
        if not self.routes.replace(generation, groups):
            return False
        self._index_groups()
        for group in self.shards:
            self.tree.schedule_roster(group, now)
        return True

    def drain(self, now: float) -> None:
        """Take no more joins; the tree learns our shards have no room."""
        self.draining = True
        for group in self.shards:
            self.tree.schedule_roster(group, now)

    def _index_groups(self) -> None:
        groups = set(self.shards) | set(self.routes.groups)
        self._groups_by_user = {user_of(g): g for g in groups}
        self._resolved = None

    # ---- lookups -------------------------------------------------------------------------
    def resolve(self, request: SipRequest) -> tuple[str, Shard | None]:
        """The group a request is addressed to (by Request-URI user part), and this
        server's shard of it if any. Raises LookupError for no such group."""
        last = self._resolved
        if last is not None and last[0] is request:
            return last[1]
        user = request.request_uri.user or ""
        shard = self._by_user.get(user)
        if shard is not None:
            found: tuple[str, Shard | None] = (shard.group, shard)
        else:
            group = self._groups_by_user.get(user)
            if group is None:
                raise LookupError(request.uri)
            found = (group, self.shards.get(group))
        self._resolved = (request, found)
        return found

    def is_member(self, group: str, aor: str) -> bool:
        """Is `aor` a member of the group here or, as the rosters say, elsewhere?"""
        shard = self.shards.get(group)
        if shard is not None and aor in shard.by_aor:
            return True
        return aor in self.tree.remote_members(group)

    def roster(self, group: str) -> frozenset[str]:
        """Every member of the group on every server, as far as this server knows."""
        shard = self.shards.get(group)
        remote = self.tree.remote_members(group)
        return remote if shard is None else remote | shard.by_aor.keys()

    def dialog(self, request: SipRequest) -> Found | None:
        """The member dialog a request with a To tag belongs to (RFC 3261 12.2.2)."""
        tag = request.to_tag
        return None if tag is None else self._dialogs.get((request.call_id, tag))

    # ---- members -------------------------------------------------------------------------
    def add(self, shard: Shard, member: Member, now: float) -> list[GroupAction]:
        """`member` joined `shard` (its 2xx is sent or received)."""
        shard.add(member)
        self._dialogs[member.key] = (shard, member)
        self.reservations.release(member.aor)
        self.tree.schedule_roster(shard.group, now)
        return [Joined(shard, member)]

    def remove(
        self, shard: Shard, member: Member, *, bye: bool, reason: str, now: float
    ) -> list[GroupAction]:
        """End `member`'s session here (with a BYE when `bye`); nothing for a member
        already gone, so a member is counted once (and once in the shard's `dropped`
        for a reason in `focus.DROPPED`: a member lost, reported to the operator)."""
        if self._dialogs.pop(member.key, None) is None:
            return []
        if reason in DROPPED:
            shard.dropped += 1
        shard.remove(member)
        self.tree.schedule_roster(shard.group, now)
        return [Left(shard, member, reason, bye)]

    # ---- SIP requests --------------------------------------------------------------------
    def in_dialog(self, request: SipRequest) -> tuple[Found | None, list[GroupAction]]:
        """The member dialog of an in-dialog request, its CSeq accounted for and its
        target refresh applied (RFC 3261 12.2.2); else None and the answer: 481 for
        no such dialog, 500 for a CSeq out of order, 403 for a new remote target
        this server cannot send to (which is then not taken, RFC 3263 4)."""
        found = self.dialog(request)
        if found is None:
            return None, [Reply(481)]
        member = found[1]
        dialog = member.dialog
        target = dialog.remote_target
        status = dialog.receive(request)
        if status is not None:
            return None, [Reply(status, reason="CSeq Out Of Order")]
        try:
            member.peer  # noqa: B018 -- a refreshed next hop must be reachable
        except (UnreachableTarget, SipParseError) as exc:
            dialog.remote_target = target
            return None, [Reply(403, (("Warning", f'399 sipfleet "Contact: {exc}"'),))]
        return found, []

    def on_invite(
        self, request: SipRequest, peer: Peer, addresses: Addresses, now: float
    ) -> list[GroupAction]:
        """An INVITE from `peer`: a re-INVITE in a member's dialog, or a join
        (module docstring). RFC 3261 13.3, RFC 3264 5 and 6."""
        if request.to_tag is not None:
            found, replies = self.in_dialog(request)
            if found is None:
                return replies
            return [self._answer(request, peer, found[1], addresses)]  # a re-INVITE
        try:
            group, shard = self.resolve(request)
        except LookupError:
            return [Reply(404, reason="No Such Group")]
        contact = request.contact
        if contact is None or not contact.uri.lower().startswith(("sip:", "sips:")):
            return [Reply(400, (("Warning", '399 sipfleet "INVITE needs a SIP Contact"'),))]
        aor = request.from_.uri
        decision = decide(
            local_room=shard is not None and not self.draining and shard.has_room,
            entries=self.routes.entries(group),
            self_name=self.name,
            reservations=self.reservations,
            known_free=self.tree.known_free(group),
            now=now,
            stopping=self.draining,
        )
        if isinstance(decision, Join):
            assert shard is not None
            return self._join(request, peer, shard, aor, addresses, now)
        if isinstance(decision, Redirect):
            self.reservations.reserve(decision.uri, aor, now)
            contact_uri = addresses.uri_for(decision.uri, peer)
            return [Redirected(group), Reply(302, (("Contact", f"<{contact_uri}>"),))]
        retry = (("Retry-After", str(decision.retry_after)),)
        return [Reply(decision.status, retry, reason=decision.reason)]

    def _join(
        self,
        request: SipRequest,
        peer: Peer,
        shard: Shard,
        aor: str,
        addresses: Addresses,
        now: float,
    ) -> list[GroupAction]:
        dialog = Dialog.as_uas(
            request,
            new_tag(),
            focus_contact(addresses.local_uri(user_of(shard.uri), peer)),
            transport=peer.transport,
        )
        member = Member(
            aor,
            dialog,
            lambda uri: addresses.target_of(uri, peer),
            supports_replaces(request),
            accepts_cpim=accepts_cpim(request.headers.get("Accept")),
        )
        try:
            member.peer  # noqa: B018 -- the next hop must be reachable (RFC 3263 4)
        except (UnreachableTarget, SipParseError) as exc:
            return [Reply(403, (("Warning", f'399 sipfleet "Contact: {exc}"'),))]
        reply = self._answer(request, peer, member, addresses)
        if reply.status != 200:
            return [reply]
        return [reply, *self.add(shard, member, now)]

    def _answer(
        self, request: SipRequest, peer: Peer, member: Member, addresses: Addresses
    ) -> Reply:
        """200 with the SDP answer to the INVITE's offer, or with our offer when it
        had none (RFC 3264 5 and 6); 415 for a body that is not SDP, 488 for an offer
        that does not parse."""
        content_type = request.headers.get("Content-Type") or SDP_TYPE
        if request.body and content_type.split(";", 1)[0].strip().lower() != SDP_TYPE:
            return Reply(415, (("Accept", SDP_TYPE),))
        host = addresses.local_host(peer)
        try:
            if request.body:
                body = member.media.answer(request.body, host)
            else:
                body = member.media.offer(host)
        except SdpError as exc:
            return Reply(488, (("Warning", f'399 sipfleet "bad SDP offer: {exc}"'),))
        headers = (
            ("Contact", member.dialog.local_contact or ""),
            ("Allow", ALLOW),
            ("Supported", SUPPORTED),
            ("Content-Type", SDP_TYPE),
        )
        return Reply(200, headers, body, to_tag=member.dialog.local_tag)

    def on_ack(self, request: SipRequest) -> None:
        """ACK for a 2xx: it carries the answer when our 2xx made the offer (RFC 3264
        5, RFC 3261 13.2.1). A missing or bad answer is logged; the member stays, the
        focus carries no media anyway."""
        found = self.dialog(request)
        if found is None or found[1].media.pending is None:
            return  # not ours, or an offer already settled (an ACK retransmission)
        try:
            found[1].media.accept_answer(request.body)
        except SdpError as exc:
            log.info("ACK from %s has no valid SDP answer: %s", found[1].aor, exc)

    def on_unacked(self, request: SipRequest, now: float) -> list[GroupAction]:
        """Our 2xx to `request` (an INVITE) was never ACKed: end that session with a
        BYE (RFC 3261 13.3.1.4)."""
        out: list[GroupAction] = []
        for shard, member in list(self._dialogs.values()):
            dialog = member.dialog
            if dialog.call_id == request.call_id and dialog.remote_tag == request.from_tag:
                out += self.remove(shard, member, bye=True, reason="unacked", now=now)
        return out

    def on_bye(self, request: SipRequest, now: float) -> list[GroupAction]:
        """A member hangs up: 200 and it leaves (RFC 3261 15.1.2)."""
        found, replies = self.in_dialog(request)
        if found is None:
            return replies
        return [Reply(200), *self.remove(*found, bye=False, reason="bye_received", now=now)]

    @staticmethod
    def on_cancel(matched: bool) -> list[GroupAction]:
        """A CANCEL: 200 when it matched an INVITE server transaction, else 481 (RFC
        3261 9.2). INVITEs are answered at once, so there is nothing left to stop."""
        return [Reply(200 if matched else 481)]

    @staticmethod
    def on_options() -> list[GroupAction]:
        """OPTIONS: what this focus takes (RFC 3261 11.2)."""
        headers = (
            ("Allow", ALLOW),
            ("Accept", "text/plain, application/sdp"),
            ("Supported", SUPPORTED),
        )
        return [Reply(200, headers)]

    def on_message(self, request: SipRequest, now: float) -> list[GroupAction]:
        """A group MESSAGE from a member, in its dialog or from its AOR (403 for
        anyone else, 404 for no such group): 200, then up the tree (flow 3)."""
        if request.to_tag is not None:
            found, replies = self.in_dialog(request)
            if found is None:
                return replies
            shard, sender = found[0], found[1].aor
        else:
            try:
                group, shard_or_none = self.resolve(request)
            except LookupError:
                return [Reply(404, reason="No Such Group")]
            sender = request.from_.uri
            if shard_or_none is None or not self.is_member(group, sender):
                return [Reply(403, reason="Not A Member")]
            shard = shard_or_none
        member = shard.by_aor.get(sender)  # the sender's own dialog, if it is here
        if member is not None and "Accept" in request.headers:
            member.accepts_cpim = accepts_cpim(request.headers.get("Accept"))
        content_type = request.headers.get("Content-Type") or "text/plain"
        envelope = Envelope(
            "group", shard.group, random_hex(12), self.name, sender, content_type, request.body
        )
        return [Reply(200), Posted(shard.group), *self._route_up(envelope, now)]

    def on_envelope(self, envelope: Envelope, up: bool, now: float) -> list[GroupAction]:
        """A group message or roster from a peer server: coming `up` from a child (to
        the root), else down the tree from the parent."""
        if up:
            return self._route_up(envelope, now)
        entries = self.routes.entries(envelope.group)
        return self._tree(self.tree.distribute(envelope, entries), now)

    # ---- the fan-out ---------------------------------------------------------------------
    def _fan_out(self, envelope: Envelope) -> list[GroupAction]:
        shard = self.shards.get(envelope.group)
        if shard is None:
            return []
        sender = envelope.sender
        recipients = tuple(m for m in shard.members.values() if m.aor != sender)
        # Even with no recipient here: the shell keeps the message for members it
        # may bring back after a crash (rejoin.py).
        return [FanOut(shard, envelope, recipients, self.sender_display_of(shard))]

    def sender_display_of(self, shard: Shard) -> SenderDisplay:
        """How `shard`'s members are shown who wrote a group message: its own mode
        (SipConference.spec.senderDisplay), else this server's default."""
        return shard.sender_display or self.sender_display

    def delivery_answered(
        self, shard: Shard, member: Member, status: int | None, now: float
    ) -> list[GroupAction]:
        """The final response to a delivery (None: the transaction timed out). 408 or
        none: the dialog is gone (RFC 3261 12.2.1.2) and a BYE tells a member that
        is only slow, so its phone does not keep showing a call that is over; 481:
        gone, no BYE."""
        if status is not None and status < 300:
            return []
        out: list[GroupAction] = [DeliveryFailed(status)]
        if status is None or status in (408, 481):
            timed_out = status is None or status == 408
            reason = "delivery_timeout" if timed_out else "dialog_gone"
            out += self.remove(shard, member, bye=timed_out, reason=reason, now=now)
        return out

    # ---- the tree and rosters ------------------------------------------------------------
    def _route_up(self, envelope: Envelope, now: float) -> list[GroupAction]:
        entries = self.routes.entries(envelope.group)
        return self._tree(self.tree.route_up(envelope, entries), now)

    def _tree(
        self, actions: Sequence[Forward | Deliver | RosterChanged | RosterDue], now: float
    ) -> list[GroupAction]:
        out: list[GroupAction] = []
        for action in actions:
            if isinstance(action, Deliver):
                out += self._fan_out(action.envelope)
            elif isinstance(action, RosterDue):
                out += self._report_roster(action.group, now)
            else:
                if isinstance(action, RosterChanged):
                    remote = action.remote
                    self.reservations.release_present(remote.uri, set(remote.members))
                out.append(action)
        return out

    def next_deadline(self) -> float | None:
        """When `tick` is next due (seconds, the shell's clock), or None."""
        return self.tree.next_deadline()

    def tick(self, now: float) -> list[GroupAction]:
        """Roster reports that are due (coalesced changes of our shards)."""
        return self._tree(self.tree.tick(now), now)

    def _report_roster(
        self, group: str, now: float, shard_gone: Shard | None = None
    ) -> list[GroupAction]:
        """Our shard's roster up the tree: its free places (none while draining) and
        members; a deleted shard (`shard_gone`) reports none."""
        shard = self.shards.get(group) or shard_gone
        if shard is None:
            return []
        alive = shard_gone is None
        capacity = shard.capacity if alive and not self.draining else 0
        members = list(shard.by_aor) if alive else []
        return self._route_up(self.tree.roster(group, shard.uri, capacity, members), now)
