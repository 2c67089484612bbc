"""The group server's shell: SIP request handling, shards and members, the admin Control.

The group logic that has state over time is pure and lives elsewhere: the
distribution tree and rosters (distribution.py), transfers (transfers.py) and
conference subscriptions (subscriptions.py) take events and `now` and return
actions, which this module performs (SIP requests through the stack, metrics)
with one loop timer per logic (clock.py). Joining, leaving, redirecting and
the fan-out to this server's members are still done here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import ClassVar

from sipfleet.node.admin_types import (
    AdvertisedAddress,
    NodeState,
    RouteEntry,
    ShardState,
    SipAddress,
    TransferRequest,
    TransferState,
)
from sipfleet.node.auth.admission import GUARDED, Admission, Proceed
from sipfleet.node.auth.credentials import CredentialStore
from sipfleet.node.auth.guard import Guard
from sipfleet.node.auth.lockout import Lockout
from sipfleet.node.auth.nonce import NonceIssuer
from sipfleet.node.auth.policy import AccessPolicy
from sipfleet.node.clock import CoreClock
from sipfleet.node.config import Config
from sipfleet.node.distribution import (
    Deliver,
    Distribution,
    Forward,
    RosterChanged,
    RosterDue,
    TreeAction,
)
from sipfleet.node.focus import (
    DROPPED,
    NO_FIELDS,
    Member,
    Shard,
    focus_contact,
    peer_of,
    shard_uri,
    supports_replaces,
    user_of,
)
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.presentation import accepts_cpim, present
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.redirect import Join, Redirect, Reservations, decide
from sipfleet.node.routes import Groups, RoutingTable
from sipfleet.node.s2s import Envelope, build_request, is_s2s, verify_request
from sipfleet.node.s2s_auth import AuthError, Verifier
from sipfleet.node.sdp import SDP_TYPE, SdpError
from sipfleet.node.sip import SipParseError, SipRequest, SipResponse, format_hostport
from sipfleet.node.sip.dialog import Dialog
from sipfleet.node.sip.ids import new_call_id, new_tag, random_hex
from sipfleet.node.sip.message import HeaderBlock
from sipfleet.node.sip.replaces import refer_target
from sipfleet.node.sip.target import UnreachableTarget
from sipfleet.node.stack import (
    Advertised,
    Outgoing,
    RequestContext,
    ResponseCallback,
    SipStack,
    route_for_size,
)
from sipfleet.node.subscriptions import (
    Respond,
    SendNotify,
    Subscription,
    SubscriptionAction,
    Subscriptions,
)
from sipfleet.node.takeover import Takeover
from sipfleet.node.transfers import (
    Finished,
    Item,
    Release,
    SendRefer,
    SendServerRefer,
    TransferAction,
    Transfers,
)
from sipfleet.node.transport import Peer

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, REFER"
DIRECTION = "X-Sipfleet-Direction"


def advertised_of(config: Config) -> Advertised | None:
    """The address members reach the server at, when any of --advertise-host,
    --advertise-udp-port, --advertise-tcp-port is set (the host defaults to the
    listen address); None when members reach it where it listens."""
    if not (config.advertise_host or config.advertise_udp_port or config.advertise_tcp_port):
        return None
    return Advertised(
        config.advertise_host or config.listen, config.advertise_udp_port, config.advertise_tcp_port
    )


class Node:
    def __init__(self, config: Config, metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.name = config.name
        self.metrics = metrics or NodeMetrics()
        self.routes = RoutingTable()
        self.shards: dict[str, Shard] = {}
        self.tree = Distribution(config.name, config.tree_fanout)
        self.draining = False
        self.reservations = Reservations()
        self.key = config.token.encode()
        self.verifier = Verifier(self.key)
        self.subs = Subscriptions()
        self._subs_clock: CoreClock | None = None
        self.jobs = Transfers(config.listen)
        self.takeover = Takeover(self)
        self._jobs_clock: CoreClock | None = None
        self.admission = Admission(
            Guard(
                config.credentials,
                NonceIssuer.with_random_key(config.nonce_seconds),
                lockout=Lockout(config.lockout_failures, duration=config.lockout_seconds),
            ),
            config.domain.lower(),
            config.access_default,
        )
        self._limiter = RateLimiter(config.rate_limit, config.rate_burst, config.rate_table_size)
        self._stack: SipStack | None = None
        self._by_user: dict[str, Shard] = {}
        self._groups_by_user: dict[str, str] = {}
        self._dialogs: dict[tuple[str, str], tuple[Shard, Member]] = {}
        self._tree_clock: CoreClock | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        config = self.config
        stack = SipStack(
            config.listen,
            config.sip_port,
            self,
            self.metrics,
            self._limiter,
            advertised=advertised_of(config),
        )
        stack.lockout = self.admission.guard.lockout
        await stack.start()
        loop = asyncio.get_running_loop()
        self._jobs_clock = CoreClock(
            loop, self.jobs.next_deadline, lambda now: self._transfer(self.jobs.tick(now))
        )
        self._tree_clock = CoreClock(
            loop, self.tree.next_deadline, lambda now: self._tree(self.tree.tick(now))
        )
        self._subs_clock = CoreClock(
            loop,
            self.subs.next_deadline,
            lambda now: self._subscription(self.subs.tick(now, self.roster)),
        )
        self._stack = stack  # ready from here on

    def close(self) -> None:
        for clock in (self._jobs_clock, self._subs_clock, self._tree_clock):
            if clock is not None:
                clock.close()
        if self._stack is not None:
            self._stack.close()

    @property
    def stack(self) -> SipStack:
        if self._stack is None:
            raise RuntimeError("the SIP stack is not started")
        return self._stack

    @property
    def host(self) -> str:
        return self.config.listen

    @property
    def port(self) -> int:
        return self._stack.port if self._stack is not None else self.config.sip_port

    @property
    def sent_by(self) -> str:
        return format_hostport(self.host, self.port)

    @property
    def server_uri(self) -> str:
        return f"sip:{self.name}@{self.sent_by}"

    # ---- Control (admin API) -----------------------------------------------------------
    def ready(self) -> bool:
        return self._stack is not None

    def state(self) -> NodeState:
        return NodeState(
            name=self.name,
            role=self.config.role,
            domain=self.config.domain,
            sip=SipAddress(host=self.host, port=self.port, advertised=self._advertised()),
            draining=self.draining,
            routes_generation=self.routes.generation,
            shards=tuple(s.state(self.draining) for s in self.shards.values()),
            routes=self.routes.snapshot(),
        )

    def _advertised(self) -> AdvertisedAddress | None:
        """The advertised address members reach us at (admin API), None if we have none."""
        a = advertised_of(self.config)
        if a is None:
            return None
        return AdvertisedAddress(
            host=a.host, udp_port=a.udp_port or self.port, tcp_port=a.tcp_port or self.port
        )

    def set_credentials(self, store: CredentialStore) -> None:
        """Member credentials from now on (a reloaded credentials file)."""
        self.admission.guard.credentials = store

    def ensure_shard(
        self, group: str, capacity: int, access: AccessPolicy | None = None
    ) -> tuple[ShardState, bool]:
        """Create or resize the group's shard; `access` (if given) becomes its policy."""
        if access is not None:
            self.admission.policies[group] = access
        shard = self.shards.get(group)
        created = shard is None
        if shard is None:
            a = advertised_of(self.config)
            host, port = (self.host, self.port) if a is None else (a.host, a.udp_port or self.port)
            shard = Shard(group, shard_uri(group, self.name, host, port), capacity)
            self.shards[group] = shard
            self._by_user[user_of(shard.uri)] = shard
            self._index_groups()
        shard.capacity = capacity
        self.metrics.capacity.labels(group).set(capacity)
        self.metrics.members.labels(group).set(len(shard.members))
        self.schedule_roster(group)
        return shard.state(self.draining), created

    async def delete_shard(self, group: str) -> ShardState:
        shard = self.shards.get(group)
        if shard is None:
            raise LookupError(f"no shard of {group} on this server")
        self.admission.policies.pop(group, None)
        for member in list(shard.members.values()):
            self.remove_member(shard, member, bye=True, reason="shard_deleted")
        del self.shards[group]
        self._by_user.pop(user_of(shard.uri), None)
        self._index_groups()
        self.metrics.members.remove(group)
        self.metrics.capacity.remove(group)
        self._report_roster(group, shard_gone=shard)
        return shard.state(self.draining)

    def put_routes(self, generation: int, groups: Groups) -> None:
        if not self.routes.replace(generation, groups):
            return
        self._index_groups()
        if self._stack is not None:  # peer servers are not rate limited
            hosts = {peer_of(e.uri).host for es in groups.values() for e in es}
            self._stack.exempt = frozenset(hosts - {self.host})
        for group in self.shards:
            self.schedule_roster(group)

    def start_transfer(self, request: TransferRequest) -> TransferState:
        job = self.jobs.start(request, self.shards.get(request.group), self.now())
        self._transfer([])  # arms the clock for the first REFER
        return job

    def transfer(self, transfer_id: str) -> TransferState:
        return self.jobs.get(transfer_id)

    def transfers(self) -> list[TransferState]:
        return self.jobs.all()

    def drain(self) -> NodeState:
        self.draining = True
        for group in self.shards:
            self.schedule_roster(group)
        return self.state()

    def _index_groups(self) -> None:
        groups = set(self.shards) | set(self.routes.groups)
        self._groups_by_user = {user_of(g): g for g in groups}

    # ---- SIP requests ------------------------------------------------------------------
    def handle_ack(self, request: SipRequest) -> None:
        """ACK for a 2xx (the core already stopped retransmitting it): it carries the
        answer when our 2xx made the offer (RFC 3264 5, RFC 3261 13.2.1). A missing or
        bad answer is logged; the member stays, the focus carries no media anyway."""
        found = self._dialog(request)
        if found is None or found[1].media.pending is None:
            return  # not ours, or an offer already settled (an ACK retransmission)
        try:
            found[1].media.accept_answer(request.body)
        except SdpError as exc:
            log.info("ACK from %s has no valid SDP answer: %s", found[1].aor, exc)

    def handle_unacked(self, request: SipRequest) -> None:
        """Our 2xx to an INVITE was never ACKed: end that session (RFC 3261 13.3.1.4)."""
        for shard, member in list(self._dialogs.values()):
            dialog = member.dialog
            if dialog.call_id == request.call_id and dialog.remote_tag == request.from_tag:
                self.remove_member(shard, member, bye=True, reason="unacked")

    def handle_request(self, ctx: RequestContext) -> None:
        request = ctx.request
        if is_s2s(request):
            self._handle_s2s(ctx)
            return
        handler = self._handlers.get(request.method)
        if handler is None:
            ctx.respond(405, [("Allow", ALLOW)])
            return
        if request.to_tag is None and request.method in GUARDED and not self._admitted(ctx):
            return
        handler(self, ctx)

    def _admitted(self, ctx: RequestContext) -> bool:
        """Digest authentication and access policy (auth.admission); False once answered."""
        group: str | None
        try:
            group = self.resolve(ctx.request)[0]
        except LookupError:
            group = None
        outcome = self.admission.admit(
            ctx.request, group, ctx.peer.host, self.stack.now(), self._is_member
        )
        if isinstance(outcome, Proceed):
            return True
        if outcome.failure is not None:
            self.metrics.member_auth_failures.labels(outcome.failure).inc()
        if outcome.status is not None:
            ctx.respond(outcome.status, outcome.headers, reason=outcome.reason)
        return False

    def _dialog(self, request: SipRequest) -> tuple[Shard, Member] | None:
        tag = request.to_tag
        return None if tag is None else self._dialogs.get((request.call_id, tag))

    def _in_dialog_request(self, ctx: RequestContext) -> tuple[Shard, Member] | None:
        """The member dialog an in-dialog request belongs to, its CSeq accounted for
        and its target refresh applied (RFC 3261 12.2.2); None once answered (481
        for no such dialog, 500 for a CSeq out of order, 403 for a new remote
        target this server cannot send to, which is then not taken)."""
        found = self._dialog(ctx.request)
        if found is None:
            ctx.respond(481)
            return None
        member = found[1]
        dialog = member.dialog
        target = dialog.remote_target
        status = dialog.receive(ctx.request)
        if status is not None:
            ctx.respond(status, reason="CSeq Out Of Order")
            return None
        try:
            member.peer  # noqa: B018 -- a refreshed next hop must be reachable (RFC 3263 4)
        except (UnreachableTarget, SipParseError) as exc:
            dialog.remote_target = target
            ctx.respond(403, [("Warning", f'399 sipfleet "Contact: {exc}"')])
            return None
        return found

    def resolve(self, request: SipRequest) -> tuple[str, Shard | None]:
        """The group a request is addressed to, and this server's shard of it if any."""
        user = request.request_uri.user or ""
        shard = self._by_user.get(user)
        if shard is not None:
            return shard.group, shard
        group = self._groups_by_user.get(user)
        if group is None:
            raise LookupError(request.uri)
        return group, self.shards.get(group)

    def _on_invite(self, ctx: RequestContext) -> None:
        request = ctx.request
        if request.to_tag is not None:
            found = self._in_dialog_request(ctx)
            if found is not None:  # a re-INVITE: it may have refreshed the remote target
                self._answer_invite(ctx, found[0], found[1])
            return
        try:
            group, shard = self.resolve(request)
        except LookupError:
            ctx.respond(404, reason="No Such Group")
            return
        contact = request.contact
        if contact is None or not contact.uri.lower().startswith(("sip:", "sips:")):
            ctx.respond(400, [("Warning", '399 sipfleet "INVITE needs a SIP Contact"')])
            return
        aor = request.from_.uri
        now = time.monotonic()
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
            peer = ctx.peer
            dialog = Dialog.as_uas(
                request,
                new_tag(),
                focus_contact(self.stack.local_uri(user_of(shard.uri), peer)),
                transport=peer.transport,
            )
            member = Member(
                aor,
                dialog,
                lambda uri: self.stack.target_of(uri, peer),
                supports_replaces(request),
                accepts_cpim=accepts_cpim(request.headers.get("Accept")),
            )
            try:
                member.peer  # noqa: B018 -- the next hop must be reachable (RFC 3263 4)
            except (UnreachableTarget, SipParseError) as exc:
                ctx.respond(403, [("Warning", f'399 sipfleet "Contact: {exc}"')])
                return
            if self._answer_invite(ctx, shard, member):
                self.add_member(shard, member)
        elif isinstance(decision, Redirect):
            self.reservations.reserve(decision.uri, aor, now)
            self.metrics.redirects.labels(group).inc()
            ctx.respond(302, [("Contact", f"<{self.stack.uri_for(decision.uri, ctx.peer)}>")])
        else:
            retry = [("Retry-After", str(decision.retry_after))]
            ctx.respond(decision.status, retry, reason=decision.reason)

    def _answer_invite(self, ctx: RequestContext, shard: Shard, member: Member) -> bool:
        """200 with the SDP answer to the INVITE's offer, or with our offer when it had
        none (RFC 3264 5 and 6); 415 for a body that is not SDP, 488 for an offer that
        does not parse. True if 200."""
        request = ctx.request
        content_type = request.headers.get("Content-Type") or SDP_TYPE
        if request.body and content_type.split(";", 1)[0].strip().lower() != SDP_TYPE:
            ctx.respond(415, [("Accept", SDP_TYPE)])
            return False
        try:
            if request.body:
                body = member.media.answer(request.body, self.stack.local_host(ctx.peer))
            else:
                body = member.media.offer(self.stack.local_host(ctx.peer))
        except SdpError as exc:
            ctx.respond(488, [("Warning", f'399 sipfleet "bad SDP offer: {exc}"')])
            return False
        headers = [
            ("Contact", member.dialog.local_contact or ""),
            ("Allow", ALLOW),
            ("Supported", "replaces, norefersub"),
            ("Content-Type", SDP_TYPE),
        ]
        ctx.respond(200, headers, body, to_tag=member.dialog.local_tag)
        return True

    def _on_bye(self, ctx: RequestContext) -> None:
        found = self._in_dialog_request(ctx)
        if found is None:
            return
        ctx.respond(200)
        self.remove_member(found[0], found[1], bye=False, reason="bye_received")

    def _on_options(self, ctx: RequestContext) -> None:
        ctx.respond(
            200,
            [
                ("Allow", ALLOW),
                ("Accept", "text/plain, application/sdp"),
                ("Supported", "replaces, norefersub"),
            ],
        )

    def _on_cancel(self, ctx: RequestContext) -> None:
        # INVITEs are answered at once, so a matching CANCEL has nothing left to stop.
        ctx.respond(200 if ctx.cancels else 481)

    def _on_message(self, ctx: RequestContext) -> None:
        request = ctx.request
        if request.to_tag is not None:
            found = self._in_dialog_request(ctx)
            if found is None:
                return
            shard, sender = found[0], found[1].aor
        else:
            try:
                group, shard_or_none = self.resolve(request)
            except LookupError:
                ctx.respond(404, reason="No Such Group")
                return
            sender = request.from_.uri
            if shard_or_none is None or not self._is_member(group, sender):
                ctx.respond(403, reason="Not A Member")
                return
            shard = shard_or_none
        member = shard.by_aor.get(sender)  # the sender's own dialog, if it is on this server
        if member is not None and "Accept" in request.headers:
            member.accepts_cpim = accepts_cpim(request.headers.get("Accept"))
        ctx.respond(200)
        self.metrics.messages_in.inc()
        content_type = request.headers.get("Content-Type") or "text/plain"
        envelope = Envelope(
            "group",
            shard.group,
            random_hex(12),
            self.name,
            sender,
            content_type,
            request.body,
        )
        self._route_up(envelope)

    def _is_member(self, group: str, aor: str) -> bool:
        shard = self.shards.get(group)
        if shard is not None and aor in shard.by_aor:
            return True
        return aor in self.tree.remote_members(group)

    def _on_subscribe(self, ctx: RequestContext) -> None:
        request, group = ctx.request, None
        if request.to_tag is None:
            try:
                group = self.resolve(request)[0]
            except LookupError:
                group = None
        peer = ctx.peer
        actions = self.subs.on_subscribe(
            request,
            group,
            f"<{self.stack.local_uri(self.name, peer)}>",
            lambda uri: self.stack.target_of(uri, peer),
            peer.transport,
            self.roster,
            self.now(),
        )
        self._subscription(actions, ctx)

    def roster(self, group: str) -> frozenset[str]:
        """Every member of the group on every server, as far as this server knows."""
        shard = self.shards.get(group)
        remote = self.tree.remote_members(group)
        return remote if shard is None else remote | shard.by_aor.keys()

    def _subscription(
        self, actions: list[SubscriptionAction], ctx: RequestContext | None = None
    ) -> None:
        """Perform what subscriptions.Subscriptions asked for."""
        for action in actions:
            if isinstance(action, Respond):
                assert ctx is not None, "only on_subscribe answers"
                ctx.respond(
                    action.status, action.headers, to_tag=action.to_tag, reason=action.reason
                )
            elif isinstance(action, SendNotify):
                sub = action.subscription
                done = self._notified(sub)
                self.send_in_dialog(sub.subscriber, "NOTIFY", action.extra, action.body, done)
        if self._subs_clock is not None:
            self._subs_clock.rearm()

    def _notified(self, sub: Subscription) -> ResponseCallback:
        def answered(response: SipResponse | None) -> None:
            if response is None or response.status >= 200:
                self.subs.notify_answered(sub, None if response is None else response.status)

        return answered

    def _on_notify(self, ctx: RequestContext) -> None:
        """A NOTIFY about a REFER: in a member's dialog (REFER to the member) it is
        accounted to that dialog first (RFC 6665 4.1.2, RFC 3261 12.2.2)."""
        request = ctx.request
        if self._dialog(request) is not None and self._in_dialog_request(ctx) is None:
            return  # answered: CSeq out of order or an unreachable new target
        matched, actions = self.jobs.on_notify(request.call_id, request.body, self.now())
        ctx.respond(200 if matched else 481)
        self._transfer(actions)

    def _on_refer(self, ctx: RequestContext) -> None:
        ctx.respond(403, reason="Only Servers May REFER Here")

    _handlers: ClassVar[dict[str, Callable[[Node, RequestContext], None]]] = {
        "INVITE": _on_invite,
        "BYE": _on_bye,
        "OPTIONS": _on_options,
        "CANCEL": _on_cancel,
        "MESSAGE": _on_message,
        "SUBSCRIBE": _on_subscribe,
        "NOTIFY": _on_notify,
        "REFER": _on_refer,
    }

    # ---- transfers (the logic is transfers.Transfers; this performs its actions) ---------
    def now(self) -> float:
        """The loop's monotonic clock (seconds), the time base of the group logic."""
        return asyncio.get_running_loop().time()

    def _transfer(self, actions: list[TransferAction]) -> None:
        for action in actions:
            if isinstance(action, SendRefer):
                item = action.item
                refer_to = f"<{self.stack.uri_for(action.target, item.member.peer)}>"
                extra = HeaderBlock(
                    [("Refer-To", refer_to), ("Referred-By", f"<{item.shard.uri}>")]
                )
                self.send_in_dialog(item.member, "REFER", extra, callback=self._referred(item))
            elif isinstance(action, SendServerRefer):
                member = action.item.member
                target = self.stack.uri_for(member.dialog.remote_target, member.peer)
                self.send_s2s(
                    "REFER",
                    action.target,
                    [
                        ("Refer-To", refer_target(target, action.replaces)),
                        *action.headers,
                        ("Contact", f"<{self.server_uri}>"),
                    ],
                    b"",
                    call_id=action.call_id,
                    callback=self._referred(action.item),
                )
            elif isinstance(action, Release):
                item = action.item
                self.remove_member(item.shard, item.member, bye=True, reason="transferred")
            elif isinstance(action, Finished):
                self.metrics.transfers.labels(action.outcome).inc()
        if self._jobs_clock is not None:
            self._jobs_clock.rearm()

    def _referred(self, item: Item) -> ResponseCallback:
        def answered(response: SipResponse | None) -> None:
            if response is None or response.status >= 200:
                status = None if response is None else response.status
                self._transfer(self.jobs.refer_answered(item, status, self.now()))

        return answered

    # ---- members -----------------------------------------------------------------------
    def add_member(self, shard: Shard, member: Member) -> None:
        shard.add(member)
        self._dialogs[member.key] = (shard, member)
        self.reservations.release(member.aor)
        self._members_changed(shard)

    def remove_member(self, shard: Shard, member: Member, *, bye: bool, reason: str) -> None:
        """End a member's session here (with a BYE when `bye`), counted once in
        `members_removed_total{reason}` (and in the shard's `dropped` for a reason in
        `focus.DROPPED`); a member already gone is left alone."""
        if self._dialogs.pop(member.key, None) is None:
            return
        self.metrics.members_removed.labels(reason).inc()
        if reason in DROPPED:
            shard.dropped += 1
        shard.remove(member)
        if bye:
            self.send_in_dialog(member, "BYE")
        self._transfer(self.jobs.on_member_left(member, self.now()))
        self._members_changed(shard)

    def _members_changed(self, shard: Shard) -> None:
        self.metrics.members.labels(shard.group).set(len(shard.members))
        self.schedule_roster(shard.group)
        self.subs.changed(shard.group, self.now())
        self._subscription([])

    def send_in_dialog(
        self,
        member: Member,
        method: str,
        extra: HeaderBlock = NO_FIELDS,
        body: bytes = b"",
        callback: ResponseCallback | None = None,
    ) -> str:
        """Send a request in `member`'s dialog (through its route set); returns the
        client transaction id."""
        return self.stack.send_request(*self._in_dialog(member, method, extra, body, callback))

    def _in_dialog(
        self,
        member: Member,
        method: str,
        extra: HeaderBlock,
        body: bytes,
        callback: ResponseCallback | None,
        from_display: str = "",
    ) -> Outgoing:
        """An in-dialog request to `member`, over TCP when it is too large for UDP."""
        hop = member.peer
        sent_by = self.stack.sent_by(hop)
        request = member.request(method, sent_by, extra, body, hop.transport, from_display)
        peer = route_for_size(len(request.data), hop)
        if peer is not hop:
            request = member.request(method, sent_by, extra, body, peer.transport, from_display)
        return request, peer, callback

    # ---- the distribution tree (distribution.Distribution; this does its I/O) -------------
    def _route_up(self, envelope: Envelope) -> None:
        self._tree(self.tree.route_up(envelope, self.routes.entries(envelope.group)))

    def _tree(self, actions: list[TreeAction]) -> None:
        """Perform what the tree logic asked for."""
        for action in actions:
            if isinstance(action, Forward):
                self._forward(action.envelope, action.entry, action.direction)
            elif isinstance(action, Deliver):
                self._deliver_local(action.envelope)
            elif isinstance(action, RosterChanged):
                remote, now = action.remote, self.now()
                self.reservations.release_present(remote.uri, set(remote.members))
                self._transfer(self.jobs.on_roster(remote.uri, remote.members, now))
                self.subs.changed(action.group, now)
                self._subscription([])
            elif isinstance(action, RosterDue):
                self._report_roster(action.group)
        if self._tree_clock is not None:
            self._tree_clock.rearm()

    def _forward(self, envelope: Envelope, entry: RouteEntry, direction: str) -> None:
        self.metrics.forwarded.labels(direction, envelope.kind).inc()
        headers = [
            *envelope.headers(),
            (DIRECTION, direction),
            ("Content-Type", envelope.content_type),
        ]
        self.send_s2s(
            "MESSAGE",
            entry.uri,
            headers,
            envelope.body,
            call_id=f"{envelope.msg_id}.{entry.server}@{self.host}",
        )

    def send_s2s(
        self,
        method: str,
        uri: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        call_id: str | None = None,
        to: str | None = None,
        from_tag: str | None = None,
        from_uri: str | None = None,
        callback: ResponseCallback | None = None,
    ) -> None:
        """Send a signed request to a peer server over TCP."""
        request = build_request(
            method,
            uri,
            sent_by=self.sent_by,
            from_uri=from_uri or self.server_uri,
            from_tag=from_tag or new_tag(),
            to=to or f"<{uri}>",
            call_id=call_id or new_call_id(self.host),
            cseq=1,
            headers=headers,
            body=body,
            key=self.key,
            now=time.time(),
        )
        target = peer_of(uri)
        self.stack.send_request(
            request, Peer("tcp", target.host, target.port), callback or self._s2s_result
        )

    def _s2s_result(self, response: SipResponse | None) -> None:
        if response is None or response.status >= 300:
            log.warning(
                "server-to-server request failed: %s",
                "timeout" if response is None else response.status,
            )

    def _handle_s2s(self, ctx: RequestContext) -> None:
        request = ctx.request
        try:
            verify_request(request, self.verifier, time.time())
        except AuthError as exc:
            self.metrics.auth_failures.inc()
            log.warning("refused %s from %s: %s", request.method, ctx.peer, exc)
            ctx.respond(403, reason="Server Authentication Failed")
            return
        if request.method == "REFER":
            self.takeover.on_server_refer(ctx)
        elif request.method == "NOTIFY":
            self._on_notify(ctx)
        elif request.method == "MESSAGE":
            try:
                envelope = Envelope.from_request(request)
            except ValueError as exc:
                ctx.respond(400, [("Warning", f'399 sipfleet "{exc}"')])
                return
            ctx.respond(200)
            if request.headers.get(DIRECTION) == "up":
                self._route_up(envelope)
            else:
                self._tree(self.tree.distribute(envelope, self.routes.entries(envelope.group)))
        else:
            ctx.respond(405, [("Allow", "MESSAGE, REFER, NOTIFY")])

    def _deliver_local(self, envelope: Envelope) -> None:
        shard = self.shards.get(envelope.group)
        if shard is None:
            return
        started = time.perf_counter()
        recipients = [m for m in shard.members.values() if m.aor != envelope.sender]
        if not recipients:
            return  # nothing to send or to time (4-5 us of batch and metrics saved)
        delivery = present(
            self.config.sender_display,
            envelope.sender,
            envelope.group,
            envelope.content_type,
            envelope.body,
        )
        transferring = sum(m.state == "transferring" for m in recipients)
        if transferring:
            self.metrics.duplicates.inc(transferring)
        # One batch: the deliveries share one clock re-arm and one metrics update.
        delivered = self.stack.send_requests(
            self._in_dialog(
                m, "MESSAGE", p.extra, p.body, self._delivery_result(shard, m), p.from_display
            )
            for m in recipients
            for p in (delivery.to(m.accepts_cpim),)
        )
        self.metrics.messages_out.inc(delivered)
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)

    def _delivery_result(self, shard: Shard, member: Member) -> ResponseCallback:
        def done(response: SipResponse | None) -> None:
            if response is not None and response.status < 300:
                return
            if response is None or response.status >= 300:
                self.metrics.delivery_failures.inc()
            if response is None or response.status in (408, 481):
                # The dialog is gone (12.2.1.2); a BYE tells a member that is only
                # slow, so its phone does not keep showing a call that is over.
                timed_out = response is None or response.status == 408
                reason = "delivery_timeout" if timed_out else "dialog_gone"
                self.remove_member(shard, member, bye=timed_out, reason=reason)

        return done

    # ---- rosters -----------------------------------------------------------------------
    def schedule_roster(self, group: str) -> None:
        """Our shard of the group changed: report it soon (coalesced)."""
        if self._stack is None:
            return
        self.tree.schedule_roster(group, self.now())
        self._tree([])

    def _report_roster(self, group: str, shard_gone: Shard | None = None) -> None:
        """Send our shard's roster up the tree (a deleted shard reports no members)."""
        shard = self.shards.get(group) or shard_gone
        if shard is None:
            return
        alive = shard_gone is None
        capacity = shard.capacity if alive and not self.draining else 0
        members = list(shard.by_aor) if alive else []
        self._route_up(self.tree.roster(group, shard.uri, capacity, members))
