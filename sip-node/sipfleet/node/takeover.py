"""Taking over a member from a peer server (the target side of refer-to-server).

A peer server sends a signed REFER naming one of its members, its dialog there
(Replaces, RFC 3891) and the member's route set. This server INVITEs the member
with Replaces through that route set, CANCELs the INVITE if it rings
RING_TIMEOUT seconds unanswered (RFC 3261 9.1), and reports the outcome in a
NOTIFY message/sipfrag to the referring server (RFC 3515 2.4.5).

The ring timer is pure (`Ringing`: a deadline per INVITE, in the shell's
virtual time); `Takeover` is a thin shell that sends through its
`TakeoverHost` (the Node), whose clock calls `Takeover.tick` at
`Ringing.next_deadline()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from sipfleet.node.focus import Member, Shard, focus_contact, peer_of, supports_replaces, user_of
from sipfleet.node.s2s import MEMBER, MEMBER_ROUTE
from sipfleet.node.schedule import Schedule
from sipfleet.node.sdp import SDP_TYPE, SdpError
from sipfleet.node.sip import NameAddr, SipParseError, SipRequest, SipResponse, SipUri
from sipfleet.node.sip.dialog import Dialog, new_request
from sipfleet.node.sip.ids import new_call_id, new_tag
from sipfleet.node.sip.message import HeaderBlock
from sipfleet.node.sip.replaces import Replaces, replaces_in
from sipfleet.node.sip.sipfrag import SIPFRAG_TYPE, build_sipfrag, subscription_state
from sipfleet.node.sip.target import UnreachableTarget
from sipfleet.node.stack import RequestContext, ResponseCallback, SipStack

log = logging.getLogger(__name__)

RING_TIMEOUT = 20.0  # seconds a Replaces INVITE may ring before its CANCEL (< TRANSFER_TIMEOUT)
Report = Callable[[int, str], None]


class Ringing:
    """Ring timers of server-sent INVITEs (RFC 3261 9.1: CANCEL one that got a
    provisional but no final response): pure, `now` in seconds on the caller's
    monotonic clock. Keys are client transaction ids; `timeout` (seconds) defaults
    to RING_TIMEOUT as it is when the timers are made."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = RING_TIMEOUT if timeout is None else timeout
        self._due: Schedule[str] = Schedule()

    def provisional(self, tx_id: str, status: int, now: float) -> None:
        """A provisional response: the first one above 100 (the phone rings) starts
        the timer; a 100 Trying or a later provisional does not move it."""
        if status > 100 and not self._due.armed(tx_id):
            self._due.arm(tx_id, now + self.timeout)

    def final(self, tx_id: str) -> None:
        """A final response (or the transaction's end): no CANCEL."""
        self._due.cancel(tx_id)

    def next_deadline(self) -> float | None:
        """When `tick` next returns something, or None."""
        return self._due.next_deadline()

    def tick(self, now: float) -> list[str]:
        """The INVITEs that rang `timeout` seconds unanswered: CANCEL them."""
        return self._due.due(now)


class S2sSender(Protocol):
    """A server that sends signed requests to its peer servers (s2s.py; Node.send_s2s)."""

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
    ) -> None: ...


class TakeoverHost(S2sSender, Protocol):
    """What a takeover needs from the server."""

    @property
    def draining(self) -> bool: ...
    @property
    def host(self) -> str: ...
    @property
    def stack(self) -> SipStack: ...
    def resolve(self, request: SipRequest) -> tuple[str, Shard | None]: ...
    def add_member(self, shard: Shard, member: Member) -> None: ...
    def now(self) -> float: ...
    def rearm_ringing(self) -> None: ...


class Takeover:
    """Answers peer servers' refer-to-server REFERs."""

    def __init__(self, host: TakeoverHost) -> None:
        self._host = host
        self.ringing = Ringing()

    def tick(self, now: float) -> None:
        """The host's clock at `ringing.next_deadline()`: CANCEL what rang too long."""
        for tx_id in self.ringing.tick(now):
            self._host.stack.cancel(tx_id)

    def on_server_refer(self, ctx: RequestContext) -> None:
        """A peer server asks us to take over a member: INVITE it with Replaces."""
        request, node = ctx.request, self._host
        try:
            _, shard = node.resolve(request)
            refer_to = NameAddr.parse(request.headers.get("Refer-To") or "")
            aor = NameAddr.parse(request.headers.get(MEMBER) or "").uri
            routes = request.headers.get_list(MEMBER_ROUTE)
        except LookupError:
            ctx.respond(404, reason="No Such Shard")
            return
        try:
            target = SipUri.parse(refer_to.uri)
            replaces = replaces_in(target)
        except SipParseError as exc:
            ctx.respond(400, [("Warning", f'399 sipfleet "{exc.reason}"')])
            return
        target.headers = ""
        contact = str(target)
        if shard is None or replaces is None:
            ctx.respond(400, [("Warning", '399 sipfleet "REFER needs our shard and Replaces"')])
            return
        local_tag = new_tag()
        ctx.respond(202, to_tag=local_tag)
        report_to = NameAddr.parse(
            request.headers.get("Contact") or request.headers.get("From") or ""
        )

        def report(status: int, reason: str) -> None:
            node.send_s2s(
                "NOTIFY",
                report_to.uri,
                [
                    ("Event", "refer"),
                    ("Subscription-State", subscription_state("terminated", reason="noresource")),
                    ("Content-Type", SIPFRAG_TYPE),
                ],
                build_sipfrag(status, reason),
                call_id=request.call_id,
                to=request.headers.get("From"),
                from_tag=local_tag,
                from_uri=shard.uri,
            )

        if not shard.has_room or node.draining:
            report(480, "Temporarily Unavailable")
            return
        self.invite_with_replaces(shard, aor, contact, routes, replaces, report)

    def invite_with_replaces(
        self,
        shard: Shard,
        aor: str,
        contact: str,
        routes: Sequence[str],
        replaces: Replaces,
        report: Report,
    ) -> None:
        """INVITE the member with Replaces through its route set (RFC 3891 3, RFC
        3261 8.1.2); CANCEL it if it rings RING_TIMEOUT seconds unanswered."""
        node = self._host
        first_hop = NameAddr.parse(routes[0]).uri if routes else contact
        peer = peer_of(first_hop)
        focus = focus_contact(node.stack.local_uri(user_of(shard.uri), peer))
        invite = new_request(
            "INVITE",
            contact,
            from_=f"<{shard.uri}>;tag={new_tag()}",
            to=f"<{aor}>",
            call_id=new_call_id(node.host),
            cseq=1,
            sent_by=node.stack.sent_by(peer),
            transport=peer.transport,
            routes=routes,
            headers=[
                ("Contact", focus),
                ("Replaces", str(replaces)),
                ("Supported", "replaces"),
                ("Allow", "INVITE, ACK, BYE, MESSAGE, NOTIFY, OPTIONS"),
            ],
        )
        ringing = self.ringing

        def answered(response: SipResponse | None) -> None:
            if response is not None and response.status < 200:
                ringing.provisional(tx_id, response.status, node.now())
                node.rearm_ringing()
                return
            ringing.final(tx_id)
            if response is None or response.status >= 300:
                status = 408 if response is None else response.status
                report(status, "Request Timeout" if response is None else response.reason)
                return
            try:
                dialog = Dialog.as_uac(invite, response, focus)
                member = Member(
                    aor,
                    dialog,
                    lambda uri: node.stack.target_of(uri, peer),
                    supports_replaces(response),
                )
                member.peer  # noqa: B018 -- its next hop must be reachable (RFC 3263 4)
            except (SipParseError, UnreachableTarget) as exc:
                # No dialog this server can keep (no or an unreachable Contact): the
                # source keeps the member until its transfer times out.
                log.warning("takeover of %s refused: %s", aor, exc)
                report(502, "Bad Gateway")
                return
            self.ack(member, response)
            if member.key not in shard.members:
                node.add_member(shard, member)
                report(200, "OK")

        tx_id = node.stack.send_request(invite, peer, answered)

    def ack(self, member: Member, response: SipResponse) -> None:
        """ACK a 2xx (sent outside any transaction, RFC 3261 13.2.2.4) through the
        route set; answer an offer made in the 2xx."""
        body, fields = b"", []
        dialog, peer = member.dialog, member.peer
        if response.body and "sdp" in (response.headers.get("Content-Type") or ""):
            try:
                body = member.media.answer(response.body, self._host.stack.local_host(peer))
                fields.append(("Content-Type", SDP_TYPE))
            except SdpError:
                pass  # an offer that does not parse has no answer; the focus carries no media
        ack = dialog.ack_with(
            response.cseq[0],
            sent_by=self._host.stack.sent_by(peer),
            transport=peer.transport,
            extra=HeaderBlock(fields),
            body=body,
        )
        self._host.stack.transmit(ack.data, peer)
