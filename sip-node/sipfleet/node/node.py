"""The group server: SIP request handling, shards, the distribution tree, the admin Control.

Flow of a group MESSAGE: the server a member is on hands it to the group's
root (entry 0 of the routes), which sends it down the tree; every server
forwards to its children and delivers to its own members. Message ids make
forwarding loop-free and exactly-once per server. Roster updates (who is on
which server) travel the same way, so every server knows the whole group.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from sipfleet.node.admin_api import TransferRequest
from sipfleet.node.auth.admission import GUARDED, Admission, Proceed
from sipfleet.node.auth.credentials import CredentialStore
from sipfleet.node.auth.guard import Guard
from sipfleet.node.auth.lockout import Lockout
from sipfleet.node.auth.nonce import NonceIssuer
from sipfleet.node.auth.policy import AccessPolicy
from sipfleet.node.config import Config
from sipfleet.node.focus import Member, Shard, peer_of, shard_uri, user_of
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.presentation import accepts_cpim, present
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.redirect import Join, Redirect, Reservations, decide
from sipfleet.node.routes import Groups, RouteEntry, RoutingTable, tree_position
from sipfleet.node.s2s import Envelope, build_request, is_s2s, verify_request
from sipfleet.node.s2s_auth import AuthError, Verifier
from sipfleet.node.sdp import SDP_TYPE, SdpError
from sipfleet.node.sip import SipRequest, SipResponse, format_hostport
from sipfleet.node.sip.ids import new_call_id, new_tag, random_hex
from sipfleet.node.sip.target import UnreachableTarget
from sipfleet.node.stack import (
    Outgoing,
    RequestContext,
    ResponseCallback,
    SipStack,
    route_for_size,
)
from sipfleet.node.subscriptions import Subscriptions
from sipfleet.node.transfers import Transfers
from sipfleet.node.transport import Peer

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, REFER"
DIRECTION = "X-Sipfleet-Direction"
ROSTER_DELAY = 0.05
SEEN_IDS = 100_000


@dataclass(frozen=True, slots=True)
class RemoteShard:
    """What a peer server last reported about its shard of a group."""

    server: str
    uri: str
    capacity: int
    members: frozenset[str]


class Node:
    def __init__(self, config: Config, metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.name = config.name
        self.metrics = metrics or NodeMetrics()
        self.routes = RoutingTable()
        self.shards: dict[str, Shard] = {}
        self.remote: dict[str, dict[str, RemoteShard]] = {}
        self.draining = False
        self.reservations = Reservations()
        self.key = config.token.encode()
        self.verifier = Verifier(self.key)
        self.subs = Subscriptions(self)
        self.jobs = Transfers(self)
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
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._roster_due: dict[str, asyncio.TimerHandle] = {}
        self._roster_seq = 0

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        stack = SipStack(
            self.config.listen, self.config.sip_port, self, self.metrics, self._limiter
        )
        stack.lockout = self.admission.guard.lockout
        await stack.start()
        self._stack = stack  # ready from here on

    def close(self) -> None:
        for handle in self._roster_due.values():
            handle.cancel()
        self.jobs.close()
        self.subs.close()
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

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.config.role,
            "domain": self.config.domain,
            "sip": {"host": self.host, "port": self.port},
            "draining": self.draining,
            "routes_generation": self.routes.generation,
            "shards": [s.to_json(self.draining) for s in self.shards.values()],
            "routes": self.routes.to_json(),
        }

    def set_credentials(self, store: CredentialStore) -> None:
        """Member credentials from now on (a reloaded credentials file)."""
        self.admission.guard.credentials = store

    def ensure_shard(
        self, group: str, capacity: int, access: AccessPolicy | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create or resize the group's shard; `access` (if given) becomes its policy."""
        if access is not None:
            self.admission.policies[group] = access
        shard = self.shards.get(group)
        created = shard is None
        if shard is None:
            shard = Shard(group, shard_uri(group, self.name, self.host, self.port), capacity)
            self.shards[group] = shard
            self._by_user[user_of(shard.uri)] = shard
            self._index_groups()
        shard.capacity = capacity
        self.metrics.capacity.labels(group).set(capacity)
        self.metrics.members.labels(group).set(len(shard.members))
        self.schedule_roster(group)
        return shard.to_json(self.draining), created

    async def delete_shard(self, group: str) -> dict[str, Any]:
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
        self._send_roster(group, shard_gone=shard)
        return shard.to_json(self.draining)

    def put_routes(self, generation: int, groups: Groups) -> None:
        if not self.routes.replace(generation, groups):
            return
        self._index_groups()
        if self._stack is not None:  # peer servers are not rate limited
            hosts = {peer_of(e.uri).host for es in groups.values() for e in es}
            self._stack.exempt = frozenset(hosts - {self.host})
        for group in self.shards:
            self.schedule_roster(group)

    def start_transfer(self, request: TransferRequest) -> dict[str, Any]:
        return self.jobs.start(request)

    def transfer(self, transfer_id: str) -> dict[str, Any]:
        return self.jobs.get(transfer_id)

    def transfers(self) -> list[dict[str, Any]]:
        return self.jobs.list()

    def drain(self) -> dict[str, Any]:
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
            if member.call_id == request.call_id and member.remote_tag == request.from_tag:
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
            found = self._dialog(request)
            if found is None:
                ctx.respond(481)
            else:
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
            known_free=self._known_free(group),
            now=now,
        )
        if isinstance(decision, Join):
            assert shard is not None
            try:
                target = self.stack.target_of(contact.uri, ctx.peer)
            except UnreachableTarget as exc:
                ctx.respond(403, [("Warning", f'399 sipfleet "Contact: {exc}"')])
                return
            member = Member(
                aor,
                contact.uri,
                target,
                request.call_id,
                request.from_tag or "",
                new_tag(),
                shard.uri,
                accepts_cpim=accepts_cpim(request.headers.get("Accept")),
            )
            if self._answer_invite(ctx, shard, member):
                self.add_member(shard, member)
        elif isinstance(decision, Redirect):
            self.reservations.reserve(decision.uri, aor, now)
            self.metrics.redirects.labels(group).inc()
            ctx.respond(302, [("Contact", f"<{self.stack.uri_for(decision.uri, ctx.peer)}>")])
        else:
            ctx.respond(480, [("Retry-After", str(decision.retry_after))], reason="Group Full")

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
            ("Contact", f"<{self.stack.local_uri(user_of(shard.uri), ctx.peer)}>"),
            ("Allow", ALLOW),
            ("Supported", "replaces, norefersub"),
            ("Content-Type", SDP_TYPE),
        ]
        ctx.respond(200, headers, body, to_tag=member.local_tag)
        return True

    def _on_bye(self, ctx: RequestContext) -> None:
        found = self._dialog(ctx.request)
        if found is None:
            ctx.respond(481)
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
            found = self._dialog(request)
            if found is None:
                ctx.respond(481)
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
        return any(aor in r.members for r in self.remote.get(group, {}).values())

    def _on_subscribe(self, ctx: RequestContext) -> None:
        self.subs.on_subscribe(ctx)

    def _on_notify(self, ctx: RequestContext) -> None:
        if not self.jobs.on_notify(ctx.request):
            ctx.respond(481)
            return
        ctx.respond(200)

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

    # ---- members -----------------------------------------------------------------------
    def add_member(self, shard: Shard, member: Member) -> None:
        shard.add(member)
        self._dialogs[member.key] = (shard, member)
        self.reservations.release(member.aor)
        self._members_changed(shard)

    def remove_member(self, shard: Shard, member: Member, *, bye: bool, reason: str) -> None:
        """End a member's session here (with a BYE when `bye`), counted once in
        `members_removed_total{reason}`; a member already gone is left alone."""
        if self._dialogs.pop(member.key, None) is None:
            return
        self.metrics.members_removed.labels(reason).inc()
        shard.remove(member)
        if bye:
            self.send_in_dialog(member, "BYE")
        self.jobs.on_member_left(member)
        self._members_changed(shard)

    def _members_changed(self, shard: Shard) -> None:
        self.metrics.members.labels(shard.group).set(len(shard.members))
        self.schedule_roster(shard.group)
        self.subs.changed(shard.group)

    def send_in_dialog(
        self,
        member: Member,
        method: str,
        extra: bytes = b"",
        body: bytes = b"",
        callback: ResponseCallback | None = None,
    ) -> None:
        self.stack.send_request(*self._in_dialog(member, method, extra, body, callback))

    def _in_dialog(
        self,
        member: Member,
        method: str,
        extra: bytes,
        body: bytes,
        callback: ResponseCallback | None,
        from_display: bytes = b"",
    ) -> Outgoing:
        """An in-dialog request to `member`, over TCP when it is too large for UDP."""
        sent_by = self.stack.sent_by(member.peer)
        request = member.request(method, sent_by, extra, body, None, from_display)
        peer = route_for_size(len(request.wire), member.peer)
        if peer is not member.peer:
            request = member.request(method, sent_by, extra, body, peer.transport, from_display)
        return request, peer, callback

    def group_members(self, group: str) -> set[str]:
        """Every member of the group on every server, as far as this server knows."""
        shard = self.shards.get(group)
        members = set(shard.by_aor) if shard is not None else set()
        for remote in self.remote.get(group, {}).values():
            members |= remote.members
        return members

    # ---- the distribution tree ---------------------------------------------------------
    def _position(self, group: str) -> tuple[RouteEntry | None, tuple[RouteEntry, ...]]:
        """(root if it is another server, children) of this server in the group's tree."""
        position = tree_position(self.routes.entries(group), self.name, self.config.tree_fanout)
        if position is None:
            return None, ()
        root = None if position.root.server == self.name else position.root
        return root, position.children

    def _route_up(self, envelope: Envelope) -> None:
        root, _ = self._position(envelope.group)
        if root is None:
            self._distribute(envelope)
        else:
            self._forward(envelope, root, "up")

    def _distribute(self, envelope: Envelope) -> None:
        if envelope.msg_id in self._seen:
            return
        self._seen[envelope.msg_id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        for child in self._position(envelope.group)[1]:
            self._forward(envelope, child, "down")
        if envelope.kind == "group":
            self._deliver_local(envelope)
        else:
            self._apply_roster(envelope)

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
            self.jobs.on_server_refer(ctx)
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
                self._distribute(envelope)
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
        if group in self._roster_due or self._stack is None:
            return
        loop = asyncio.get_running_loop()
        self._roster_due[group] = loop.call_later(ROSTER_DELAY, self._send_roster, group)

    def _send_roster(self, group: str, shard_gone: Shard | None = None) -> None:
        handle = self._roster_due.pop(group, None)
        if handle is not None:
            handle.cancel()
        shard = self.shards.get(group) or shard_gone
        if shard is None:
            return
        alive = shard_gone is None
        body = json.dumps(
            {
                "server": self.name,
                "uri": shard.uri,
                "capacity": shard.capacity if alive and not self.draining else 0,
                "members": sorted(shard.by_aor) if alive else [],
            }
        ).encode()
        self._roster_seq += 1
        envelope = Envelope(
            "roster",
            group,
            f"{self.name}.{self._roster_seq}.{new_tag()}",
            self.name,
            "",
            "application/json",
            body,
        )
        self._route_up(envelope)

    def _apply_roster(self, envelope: Envelope) -> None:
        if envelope.origin == self.name:
            return
        try:
            data = json.loads(envelope.body)
            remote = RemoteShard(
                str(data["server"]),
                str(data["uri"]),
                int(data["capacity"]),
                frozenset(str(m) for m in data["members"]),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("bad roster from %s", envelope.origin)
            return
        self.remote.setdefault(envelope.group, {})[remote.server] = remote
        self.reservations.release_present(remote.uri, set(remote.members))
        self.jobs.on_roster(remote.uri, remote.members)
        self.subs.changed(envelope.group)

    def _known_free(self, group: str) -> dict[str, int]:
        return {
            r.uri: max(0, r.capacity - len(r.members)) for r in self.remote.get(group, {}).values()
        }
