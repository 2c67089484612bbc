"""Moving members to another shard (flow 2), at a bounded rate.

`refer`: an in-dialog REFER to the member (RFC 3515) with Refer-To the target
shard; the member INVITEs the target and reports in NOTIFY message/sipfrag
(none if it answers Refer-Sub: false, RFC 4488). `refer-to-server`: a signed
REFER to the target server, which INVITEs the member with Replaces (RFC 3891)
naming the member's dialog here, and reports back in NOTIFY.

A member is let go here (BYE) only once the target server's roster, which
comes down the distribution tree, lists it: messages sent meanwhile are
delivered here (counted in sipfleet_node_duplicate_deliveries_total, since the
new server may deliver them too), so none is lost. A 2xx sipfrag without the
roster confirmation lets the member go after CONFIRM_GRACE seconds.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sipfleet.node.admin_api import Conflict, TransferRequest
from sipfleet.node.focus import Member, Shard, peer_of, user_of
from sipfleet.node.s2s import MEMBER
from sipfleet.node.sdp import SdpError
from sipfleet.node.sip import Headers, NameAddr, SipParseError, SipRequest, SipResponse, SipUri
from sipfleet.node.sip.ids import new_branch, new_call_id, new_tag
from sipfleet.node.sip.replaces import Replaces, refer_target, replaces_in
from sipfleet.node.sip.sipfrag import SIPFRAG_TYPE, build_sipfrag, parse_sipfrag, subscription_state

if TYPE_CHECKING:
    from sipfleet.node.node import Node
    from sipfleet.node.stack import RequestContext

TRANSFER_TIMEOUT = 32.0
CONFIRM_GRACE = 2.0
FINAL = ("moved", "failed")


@dataclass(eq=False)
class Item:
    member: Member
    shard: Shard
    state: str = "pending"
    call_id: str = ""
    handle: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class Job:
    id: str
    request: TransferRequest
    items: list[Item]
    moved: int = 0
    failed: int = 0
    state: str = "running"
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        r = self.request
        return {
            "id": self.id,
            "group": r.group,
            "target": r.target,
            "method": r.method,
            "rate": r.rate,
            "requested": len(self.items),
            "moved": self.moved,
            "failed": self.failed,
            "state": self.state,
            "pending": sum(1 for i in self.items if i.state not in FINAL),
        }


class Transfers:
    def __init__(self, node: Node) -> None:
        self._node = node
        self._jobs: dict[str, Job] = {}
        self._by_call: dict[str, tuple[Job, Item]] = {}
        self._by_member: dict[Member, tuple[Job, Item]] = {}

    def close(self) -> None:
        for job in self._jobs.values():
            if job.task is not None:
                job.task.cancel()
            for item in job.items:
                if item.handle is not None:
                    item.handle.cancel()

    # ---- admin -------------------------------------------------------------------------
    def start(self, request: TransferRequest) -> dict[str, Any]:
        shard = self._node.shards.get(request.group)
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
        job = Job(secrets.token_hex(6), request, [Item(m, shard) for m in chosen])
        self._jobs[job.id] = job
        for item in job.items:
            self._by_member[item.member] = (job, item)
        job.task = asyncio.get_running_loop().create_task(self._run(job))
        return job.to_json()

    def get(self, transfer_id: str) -> dict[str, Any]:
        job = self._jobs.get(transfer_id)
        if job is None:
            raise LookupError(f"no transfer {transfer_id}")
        return job.to_json()

    def list(self) -> list[dict[str, Any]]:
        return [job.to_json() for job in self._jobs.values()]

    # ---- running -----------------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        interval = 1.0 / job.request.rate
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, item in enumerate(job.items):
            # Paced against the start, not the previous step: sleeping a full
            # interval after each member let the work and the loop's latency
            # add up (asked 200/s, moved 173/s in bench/transfer_rate.py).
            await asyncio.sleep(max(0.0, start + index * interval - loop.time()))
            if item.state == "pending":
                if item.member.key in item.shard.members:
                    self._begin(job, item)
                else:
                    self._fail(job, item)

    def _begin(self, job: Job, item: Item) -> None:
        member, target = item.member, job.request.target
        member.state = "transferring"
        item.state = "referred"
        loop = asyncio.get_running_loop()
        item.handle = loop.call_later(TRANSFER_TIMEOUT, self._fail, job, item)

        def answered(response: SipResponse | None) -> None:
            if response is None or response.status >= 300:
                self._fail(job, item)

        if job.request.method == "refer":
            item.call_id = member.call_id
            self._by_call[item.call_id] = (job, item)
            extra = (
                f"Refer-To: <{self._node.stack.uri_for(target, member.peer)}>\r\n"
                f"Referred-By: <{item.shard.uri}>\r\n"
                f"Contact: <{self._node.stack.local_uri(user_of(item.shard.uri), member.peer)}>\r\n"
            ).encode()
            self._node.send_in_dialog(member, "REFER", extra, callback=answered)
            return
        # RFC 3891: the tags as the member sees its dialog (its local tag is our remote one)
        replaces = Replaces(member.call_id, member.remote_tag, member.local_tag)
        refer_to = refer_target(self._node.stack.uri_for(member.contact, member.peer), replaces)
        item.call_id = new_call_id(self._node.host)
        self._by_call[item.call_id] = (job, item)
        headers = [
            ("Refer-To", refer_to),
            (MEMBER, f"<{member.aor}>"),
            ("Referred-By", f"<{item.shard.uri}>"),
            ("Contact", f"<{self._node.server_uri}>"),
        ]
        self._node.send_s2s("REFER", target, headers, b"", call_id=item.call_id, callback=answered)

    def on_notify(self, request: SipRequest) -> bool:
        """A NOTIFY (sipfrag) about a REFER we sent; False if it matches none."""
        found = self._by_call.get(request.call_id)
        if found is None:
            return False
        job, item = found
        try:
            status, _ = parse_sipfrag(request.body)
        except SipParseError:
            return True
        if item.state in FINAL or status < 200:
            return True
        if status >= 300:
            self._fail(job, item)
        elif item.member.key not in item.shard.members:
            self._confirm(job, item)
        else:
            if item.handle is not None:
                item.handle.cancel()
            loop = asyncio.get_running_loop()
            item.handle = loop.call_later(CONFIRM_GRACE, self._confirm, job, item)
        return True

    def on_roster(self, uri: str, members: frozenset[str]) -> None:
        """A server reported its shard `uri`: members it lists have arrived there."""
        for job, item in list(self._by_member.values()):
            if job.request.target == uri and item.member.aor in members:
                self._confirm(job, item)

    def on_member_left(self, member: Member) -> None:
        found = self._by_member.get(member)
        if found is not None and found[1].state == "pending":
            self._fail(*found)

    def _confirm(self, job: Job, item: Item) -> None:
        if item.state in FINAL:
            return
        self._finish(job, item, "moved")
        self._node.remove_member(item.shard, item.member, bye=True, reason="transferred")

    def _fail(self, job: Job, item: Item) -> None:
        if item.state in FINAL:
            return
        self._finish(job, item, "failed")
        item.member.state = "joined"

    def _finish(self, job: Job, item: Item, outcome: str) -> None:
        item.state = outcome
        if outcome == "moved":
            job.moved += 1
        else:
            job.failed += 1
        if item.handle is not None:
            item.handle.cancel()
        # Late NOTIFYs about this REFER (say, the 200 sipfrag after the roster already
        # confirmed the move) are still answered 200 for a while.
        loop = asyncio.get_running_loop()
        item.handle = loop.call_later(TRANSFER_TIMEOUT, self._forget_call, item)
        self._by_member.pop(item.member, None)
        self._node.metrics.transfers.labels(outcome).inc()
        if all(i.state in FINAL for i in job.items):
            job.state = "failed" if job.moved == 0 and job.failed else "done"

    def _forget_call(self, item: Item) -> None:
        if self._by_call.get(item.call_id, (None, None))[1] is item:
            del self._by_call[item.call_id]

    # ---- target side of refer-to-server ------------------------------------------------
    def on_server_refer(self, ctx: RequestContext) -> None:
        """A peer server asks us to take over a member: INVITE it with Replaces."""
        request, node = ctx.request, self._node
        try:
            _, shard = node.resolve(request)
            refer_to = NameAddr.parse(request.headers.get("Refer-To") or "")
            aor = NameAddr.parse(request.headers.get(MEMBER) or "").uri
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
        self._invite_with_replaces(shard, aor, contact, replaces, report)

    def _invite_with_replaces(
        self, shard: Shard, aor: str, contact: str, replaces: Replaces, report: Any
    ) -> None:
        node, peer, tag = self._node, peer_of(contact), new_tag()
        via = f"SIP/2.0/{peer.transport.upper()} {node.stack.sent_by(peer)};branch={new_branch()}"
        call_id = new_call_id(node.host)
        headers = Headers(
            [
                ("Via", via),
                ("Max-Forwards", "70"),
                ("From", f"<{shard.uri}>;tag={tag}"),
                ("To", f"<{aor}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<{node.stack.local_uri(user_of(shard.uri), peer)}>"),
                ("Replaces", str(replaces)),
                ("Supported", "replaces"),
                ("Allow", "INVITE, ACK, BYE, MESSAGE, NOTIFY, OPTIONS"),
            ]
        )
        invite = SipRequest("INVITE", contact, headers)

        def answered(response: SipResponse | None) -> None:
            if response is not None and response.status < 200:
                return
            if response is None or response.status >= 300:
                status = 408 if response is None else response.status
                report(status, "Request Timeout" if response is None else response.reason)
                return
            member_contact = (response.contact or NameAddr(contact)).uri
            member = Member(
                aor,
                member_contact,
                peer_of(member_contact, peer.transport),
                call_id,
                response.to_tag or "",
                tag,
                shard.uri,
            )
            self._ack(member, response)
            if (call_id, tag) not in shard.members:
                node.add_member(shard, member)
                report(200, "OK")

        node.stack.send_request(invite, peer, answered)

    def _ack(self, member: Member, response: SipResponse) -> None:
        """ACK a 2xx (sent outside any transaction); answer an offer made in the 2xx."""
        body, extra = b"", b""
        if response.body and "sdp" in (response.headers.get("Content-Type") or ""):
            try:
                body = member.media.answer(response.body, self._node.stack.local_host(member.peer))
                extra = b"Content-Type: application/sdp\r\n"
            except SdpError:
                pass  # an offer that does not parse has no answer; the focus carries no media
        member.local_cseq = 0  # the ACK carries the INVITE's CSeq number (1)
        ack = member.request("ACK", self._node.stack.sent_by(member.peer), extra, body)
        self._node.stack.transmit(ack.wire, member.peer)
