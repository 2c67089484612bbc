"""The group server's shell: it parses and sends, the group logic decides.

All group logic is pure and lives elsewhere: joins, leaves, the member table
and the fan-out (group.py), the distribution tree and rosters
(distribution.py, reached through group.py), transfers (transfers.py),
conference subscriptions (subscriptions.py), the takeover ring timer
(takeover.py). Each takes events and `now` and returns actions; this module
performs them (answers, SIP requests through the stack, metrics) and drives
each logic's timers with one loop timer (clock.py). It also serves the admin
API's `Control` calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import ClassVar

from sipfleet.node.admin_types import (
    Access,
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
from sipfleet.node.distribution import Forward, RosterChanged
from sipfleet.node.focus import NO_FIELDS, Member, Shard, peer_of, shard_uri
from sipfleet.node.group import (
    ALLOW,
    DeliveryFailed,
    FanOut,
    GroupAction,
    GroupCore,
    Joined,
    Left,
    Posted,
    Redirected,
    Reply,
)
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.presentation import SenderDisplay, present
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.rejoin import REPLICA, CrashRecovery
from sipfleet.node.restore import RESTORED, RETRY_AFTER
from sipfleet.node.routes import Groups, RoutingTable
from sipfleet.node.s2s import KIND, Envelope, build_request, is_s2s, verify_request
from sipfleet.node.s2s_auth import AuthError, Verifier
from sipfleet.node.sip import SipRequest, SipResponse, format_hostport
from sipfleet.node.sip.ids import new_call_id, new_tag
from sipfleet.node.sip.message import HeaderBlock
from sipfleet.node.sip.replaces import refer_target
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
from sipfleet.node.tls import Certificates
from sipfleet.node.transfers import (
    Finished,
    Item,
    Release,
    SendRefer,
    SendServerRefer,
    TransferAction,
    Transfers,
)

log = logging.getLogger(__name__)

DIRECTION = "X-Sipfleet-Direction"
# Node._clocks: one loop timer per pure core (transfers, group, subscriptions, takeover).
GROUP_CLOCK = 1


def advertised_of(config: Config) -> Advertised | None:
    """The address members reach the server at, when any of --advertise-host,
    --advertise-udp-port, --advertise-tcp-port is set (the host defaults to the
    listen address); None when members reach it where it listens."""
    if not (
        config.advertise_host
        or config.advertise_udp_port
        or config.advertise_tcp_port
        or config.advertise_tls_port
    ):
        return None
    return Advertised(
        config.advertise_host or config.listen,
        config.advertise_udp_port,
        config.advertise_tcp_port,
        config.advertise_tls_port,
    )


class Node:
    """One SIP server of the fleet (role main or node): the shell around the group
    logic, the SIP stack's `Application` and the admin API's `Control`."""

    def __init__(self, config: Config, metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.name = config.name
        self.metrics = metrics or NodeMetrics()
        self.group = GroupCore(config.name, config.tree_fanout, config.sender_display)
        self.key = config.token.encode()
        self.verifier = Verifier(self.key)
        self.subs = Subscriptions()
        self.jobs = Transfers(config.listen)
        self.takeover = Takeover(self)
        self.recovery = CrashRecovery(self, config.hosted_file, config.expected_groups_file)
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
        self._clocks: list[CoreClock] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the running loop, from start()
        self.certificates = None if config.tls is None else Certificates(config.tls)

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
            tls=self.certificates,
        )
        stack.lockout = self.admission.guard.lockout
        stack.exempt = self.admission.shared_sources = config.trusted_sources
        stack.s2s_tls = config.s2s_transport == "tls"
        await stack.start()
        loop = self._loop = asyncio.get_running_loop()
        self._clocks = [  # in the order of the *_CLOCK indexes
            CoreClock(
                loop, self.jobs.next_deadline, lambda now: self._transfer(self.jobs.tick(now))
            ),
            CoreClock(
                loop, self.group.next_deadline, lambda now: self._perform(self.group.tick(now))
            ),
            CoreClock(
                loop,
                self.subs.next_deadline,
                lambda now: self._subscription(self.subs.tick(now, self.roster)),
            ),
            CoreClock(
                loop, self.takeover.ringing.next_deadline, lambda now: self.takeover.tick(now)
            ),
        ]
        self._stack = stack  # ready from here on
        self.recovery.start(loop)
        self._rearm()  # rosters scheduled before the start

    def close(self) -> None:
        self.recovery.close()
        for clock in self._clocks:
            clock.close()
        if self._stack is not None:
            self._stack.close()

    def _rearm(self) -> None:
        """Re-arm every logic's loop timer (after a call that may have armed one)."""
        for clock in self._clocks:
            clock.rearm()

    def rearm_ringing(self) -> None:
        """The takeover ring timers changed (takeover.TakeoverHost)."""
        self._rearm()

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

    @property
    def shards(self) -> dict[str, Shard]:
        """This server's shards by group URI (group.GroupCore's)."""
        return self.group.shards

    @property
    def routes(self) -> RoutingTable:
        """The routing table the operator pushed."""
        return self.group.routes

    @property
    def draining(self) -> bool:
        """Taking no joins (drained)."""
        return self.group.draining

    def now(self) -> float:
        """The loop's monotonic clock (seconds), the time base of the group logic."""
        loop = self._loop  # kept from start(): get_running_loop() costs 0.15 us a call
        return (loop if loop is not None else asyncio.get_running_loop()).time()

    # ---- Control (admin API) -----------------------------------------------------------
    def ready(self) -> bool:
        return self._stack is not None

    def state(self) -> NodeState:
        return NodeState(
            name=self.name,
            instance=self.recovery.instance,
            role=self.config.role,
            domain=self.config.domain,
            sip=SipAddress(host=self.host, port=self.port, advertised=self._advertised()),
            draining=self.draining,
            routes_generation=self.routes.generation,
            shards=tuple(self._shard_state(s) for s in self.shards.values()),
            routes=self.routes.snapshot(),
        )

    def _shard_state(self, shard: Shard) -> ShardState:
        """The shard as the admin API shows it, with the access policy and the
        sender display in force here."""
        policy = self.admission.policy_for(shard.group)
        access = None if policy is None else Access.model_validate(policy.to_json())
        state = shard.state(self.draining, self.group.sender_display_of(shard))
        return state.model_copy(update={"access": access})

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
        self,
        group: str,
        capacity: int,
        access: AccessPolicy | None = None,
        sender_display: SenderDisplay | None = None,
    ) -> tuple[ShardState, bool]:
        """Create or resize the group's shard; `access` (if given) becomes its policy,
        `sender_display` (if given) its presentation of senders."""
        if access is not None:
            self.admission.policies[group] = access
        a = advertised_of(self.config)
        host, port = (self.host, self.port) if a is None else (a.host, a.udp_port or self.port)
        shard, created = self.group.ensure_shard(
            group, capacity, shard_uri(group, self.name, host, port), self.now(), sender_display
        )
        self.metrics.capacity.labels(group).set(capacity)
        self.metrics.members.labels(group).set(len(shard.members))
        if self._stack is not None:
            self.recovery.routes_changed()
        self._rearm()
        return self._shard_state(shard), created

    async def delete_shard(self, group: str) -> ShardState:
        """End the shard's members' sessions (BYE) and drop it. Raises LookupError."""
        shard, actions = self.group.delete_shard(group, self.now())
        self.admission.policies.pop(group, None)
        self._perform(actions)
        self.metrics.members.remove(group)
        self.metrics.capacity.remove(group)
        self.recovery.shard_deleted(group)
        return self._shard_state(shard)

    def put_routes(self, generation: int, groups: Groups) -> None:
        if not self.group.put_routes(generation, groups, self.now()):
            return
        if self._stack is not None:  # peer servers and trusted proxies are not rate limited
            hosts = {peer_of(e.uri).host for es in groups.values() for e in es}
            exempt = frozenset(hosts - {self.host}) | self.config.trusted_sources
            self._stack.exempt = self.admission.shared_sources = exempt
            self.recovery.routes_changed()
        self._rearm()

    def start_transfer(self, request: TransferRequest) -> TransferState:
        job = self.jobs.start(request, self.shards.get(request.group), self.now())
        self._transfer([])  # arms the clock for the first REFER
        return job

    def transfer(self, transfer_id: str) -> TransferState:
        return self.jobs.get(transfer_id)

    def transfers(self) -> list[TransferState]:
        return self.jobs.all()

    def drain(self) -> NodeState:
        self.group.drain(self.now())
        self._rearm()
        return self.state()

    # ---- SIP requests (group.GroupCore decides; this answers and performs) ---------------
    def handle_ack(self, request: SipRequest) -> None:
        self.group.on_ack(request)

    def handle_unacked(self, request: SipRequest) -> None:
        self._perform(self.group.on_unacked(request, self.now()))

    def handle_request(self, ctx: RequestContext) -> None:
        request = ctx.request
        if is_s2s(request):
            self._handle_s2s(ctx)
            return
        handler = self._handlers.get(request.method)
        if handler is None:
            ctx.respond(405, [("Allow", ALLOW)])
            return
        if self.recovery.restoring is not None and self._restoring(ctx):
            return
        if request.to_tag is None and request.method in GUARDED and not self._admitted(ctx):
            return
        handler(self, ctx)

    def _restoring(self, ctx: RequestContext) -> bool:
        """A restarted server (restore.py): 503 with Retry-After (RFC 3261 21.5.4) for
        a group it hosted that is not back yet, and for a dialog it lost, which its
        replicas' holder is taking over (a 481 would end it, 12.2.1.2); True once
        answered."""
        restoring, request, now = self.recovery.restoring, ctx.request, self.now()
        if restoring is None:
            return False
        if request.to_tag is None:
            refused = request.method in RESTORED and restoring.group_pending(
                request.request_uri.user or "", now
            )
        else:
            refused = (
                request.method != "SUBSCRIBE"
                and restoring.dialogs_pending(now)
                and self.group.dialog(request) is None
            )
        if refused:
            retry = [("Retry-After", str(RETRY_AFTER))]
            ctx.respond(503, retry, reason="Restarting")
        return refused

    def _admitted(self, ctx: RequestContext) -> bool:
        """Digest authentication and access policy (auth.admission); False once answered."""
        group: str | None
        try:
            group = self.group.resolve(ctx.request)[0]
        except LookupError:
            group = None
        outcome = self.admission.admit(
            ctx.request, group, ctx.peer.host, self.stack.now(), self.group.is_member
        )
        if isinstance(outcome, Proceed):
            return True
        if outcome.failure is not None:
            self.metrics.member_auth_failures.labels(outcome.failure).inc()
        if outcome.status is not None:
            ctx.respond(outcome.status, outcome.headers, reason=outcome.reason)
        return False

    def resolve(self, request: SipRequest) -> tuple[str, Shard | None]:
        """The group a request is addressed to, and this server's shard of it if any."""
        return self.group.resolve(request)

    def roster(self, group: str) -> frozenset[str]:
        """Every member of the group on every server, as far as this server knows."""
        return self.group.roster(group)

    def _on_invite(self, ctx: RequestContext) -> None:
        request = ctx.request
        self._perform(self.group.on_invite(request, ctx.peer, self.stack, self.now()), ctx)
        found = None if request.to_tag is None else self.group.dialog(request)
        if found is not None:  # a re-INVITE: it may have refreshed the remote target
            self.recovery.joined(*found)

    def _on_bye(self, ctx: RequestContext) -> None:
        self._perform(self.group.on_bye(ctx.request, self.now()), ctx)

    def _on_options(self, ctx: RequestContext) -> None:
        self._perform(self.group.on_options(), ctx)

    def _on_cancel(self, ctx: RequestContext) -> None:
        self._perform(self.group.on_cancel(ctx.cancels is not None), ctx)

    def _on_message(self, ctx: RequestContext) -> None:
        self._perform(self.group.on_message(ctx.request, self.now()), ctx)

    def _on_subscribe(self, ctx: RequestContext) -> None:
        request, group = ctx.request, None
        if request.to_tag is None:
            try:
                group = self.group.resolve(request)[0]
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
        self._rearm()

    def _notified(self, sub: Subscription) -> ResponseCallback:
        def answered(response: SipResponse | None) -> None:
            if response is None or response.status >= 200:
                self.subs.notify_answered(sub, None if response is None else response.status)

        return answered

    def _on_notify(self, ctx: RequestContext) -> None:
        """A NOTIFY about a REFER: in a member's dialog (REFER to the member) it is
        accounted to that dialog first (RFC 6665 4.1.2, RFC 3261 12.2.2)."""
        request = ctx.request
        if self.group.dialog(request) is not None:
            found, replies = self.group.in_dialog(request)
            if found is None:  # CSeq out of order or an unreachable new target
                self._perform(replies, ctx)
                return
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

    # ---- performing the group logic's actions ------------------------------------------
    def _perform(self, actions: Iterable[GroupAction], ctx: RequestContext | None = None) -> None:
        """Perform what group.GroupCore asked for; `ctx` is the request a Reply answers.
        Then re-arm the group core's clock; all four clocks only after an action that
        may have reached another core (a group MESSAGE's Reply, Posted, FanOut and
        Forward reach none: re-arming all four after each costs 0.35 us more)."""
        others = False
        for action in actions:
            if isinstance(action, Reply):
                assert ctx is not None, "only a request gets a Reply"
                ctx.respond(
                    action.status, action.headers, action.body, action.to_tag, action.reason
                )
            elif isinstance(action, Posted):
                self.metrics.messages_in.inc()
            elif isinstance(action, FanOut):
                self._fan_out(action)
            elif isinstance(action, Forward):
                self._forward(action.envelope, action.entry, action.direction)
            else:
                others = True
                if isinstance(action, Joined):
                    self.recovery.joined(action.shard, action.member)
                    self._members_changed(action.shard)
                elif isinstance(action, Left):
                    self._left(action)
                elif isinstance(action, Redirected):
                    self.metrics.redirects.labels(action.group).inc()
                elif isinstance(action, DeliveryFailed):
                    self.metrics.delivery_failures.inc()
                elif isinstance(action, RosterChanged):
                    remote, now = action.remote, self.now()
                    self._transfer(self.jobs.on_roster(remote.uri, remote.members, now))
                    self.subs.changed(action.group, now)
                    self._subscription([])
        if others:
            self._rearm()
        elif self._clocks:  # none before start()
            self._clocks[GROUP_CLOCK].rearm()

    def _left(self, action: Left) -> None:
        """A member left: counted once in `members_removed_total{reason}`, its session
        ended with a BYE when asked, its transfer (if any) told."""
        self.metrics.members_removed.labels(action.reason).inc()
        self.recovery.left(action.shard, action.member)
        if action.bye:
            self.send_in_dialog(action.member, "BYE")
        self._transfer(self.jobs.on_member_left(action.member, self.now()))
        self._members_changed(action.shard)

    def _members_changed(self, shard: Shard) -> None:
        self.metrics.members.labels(shard.group).set(len(shard.members))
        self.subs.changed(shard.group, self.now())
        self._subscription([])

    def add_member(self, shard: Shard, member: Member) -> None:
        """`member` joined `shard` (a takeover's INVITE was answered)."""
        self._perform(self.group.add(shard, member, self.now()))

    def remove_member(self, shard: Shard, member: Member, *, bye: bool, reason: str) -> None:
        """End `member`'s session here (a BYE when `bye`), counted under `reason`."""
        self._perform(self.group.remove(shard, member, bye=bye, reason=reason, now=self.now()))

    def listed_elsewhere(self, group: str, aor: str, origin: str) -> bool:
        """Is `aor` a member of `group` here, or on a server other than `origin` as
        far as the rosters this server got say? (A member a dead server had moved
        away just before it died is not an orphan.)"""
        shard = self.shards.get(group)
        if shard is not None and aor in shard.by_aor:
            return True
        remote = self.group.tree.remote.get(group, {})
        return any(aor in r.members for name, r in remote.items() if name != origin)

    # ---- transfers (the logic is transfers.Transfers; this performs its actions) ---------
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
                self._perform(
                    self.group.remove(
                        item.shard, item.member, bye=True, reason="transferred", now=self.now()
                    )
                )
            elif isinstance(action, Finished):
                self.metrics.transfers.labels(action.outcome).inc()
        self._rearm()

    def _referred(self, item: Item) -> ResponseCallback:
        def answered(response: SipResponse | None) -> None:
            if response is None or response.status >= 200:
                status = None if response is None else response.status
                self._transfer(self.jobs.refer_answered(item, status, self.now()))

        return answered

    # ---- sending in a member's dialog ----------------------------------------------------
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

    def _fan_out(self, action: FanOut) -> None:
        """Deliver a group message to this server's members, in one batch (one clock
        re-arm and one metrics update for all)."""
        self.recovery.seen(action.envelope)
        if not action.recipients:
            return  # nothing to send or to time
        started = time.perf_counter()
        duplicates = action.duplicates
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        shard = action.shard
        delivered = self.stack.send_requests(
            self._in_dialog(
                m, "MESSAGE", p.extra, p.body, self._delivery_result(shard, m), p.from_display
            )
            for m, p in action.sends()
        )
        self.metrics.messages_out.inc(delivered)
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)

    def deliver(
        self,
        shard: Shard,
        member: Member,
        envelope: Envelope,
        then: ResponseCallback | None = None,
    ) -> None:
        """One group message to one member of `shard` (one brought back after a
        crash gets those it missed: rejoin.py); `then` also gets the answer."""
        mode, e = self.group.sender_display_of(shard), envelope
        p = present(mode, e.sender, e.group, e.content_type, e.body).to(member.accepts_cpim)
        result = self._delivery_result(shard, member)

        def done(response: SipResponse | None) -> None:
            result(response)
            if then is not None:
                then(response)

        self.stack.send_request(
            *self._in_dialog(member, "MESSAGE", p.extra, p.body, done, p.from_display)
        )
        self.metrics.messages_out.inc()

    def _delivery_result(self, shard: Shard, member: Member) -> ResponseCallback:
        def done(response: SipResponse | None) -> None:
            if response is not None and response.status < 300:
                return
            status = None if response is None else response.status
            self._perform(self.group.delivery_answered(shard, member, status, self.now()))

        return done

    # ---- servers: the distribution tree's I/O --------------------------------------------
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
        """Send a signed request to a peer server over TCP (TLS with --s2s-transport tls)."""
        peer = self.stack.server_peer(peer_of(uri))
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
            transport=peer.transport.upper(),
        )
        self.stack.send_request(request, peer, callback or self._s2s_result)

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
        elif request.method == "MESSAGE" and request.headers.get(KIND) == REPLICA:
            self.recovery.on_replica(ctx)
        elif request.method == "MESSAGE":
            try:
                envelope = Envelope.from_request(request)
            except ValueError as exc:
                ctx.respond(400, [("Warning", f'399 sipfleet "{exc}"')])
                return
            ctx.respond(200)
            up = request.headers.get(DIRECTION) == "up"
            self._perform(self.group.on_envelope(envelope, up, self.now()))
        else:
            ctx.respond(405, [("Allow", "MESSAGE, REFER, NOTIFY")])
