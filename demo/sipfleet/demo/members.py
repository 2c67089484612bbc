"""The demo's load generator: group members as SIP user agents on one UDP port.

Built on the sip-node core (message model, transaction layer, dialogs) and its
asyncio stack, so every member talks real SIP to the real servers:

- join: INVITE the group URI at the main server; a 302 is followed to the
  shard it names (a redirect), a 480/503 "full" is retried after its
  Retry-After, a 200 is ACKed and makes the dialog;
- chat: an in-dialog MESSAGE to its server, which sends it down the group's
  distribution tree; group MESSAGEs from others are answered 200 and counted;
- transfer: an in-dialog REFER (RFC 3515) is answered 202 with
  ``Refer-Sub: false`` (RFC 4488), then the member INVITEs the Refer-To shard;
  the old server ends the old dialog with a BYE, which is answered 200;
- leave: BYE on its dialog.

Members share one socket; an incoming request finds its member by dialog id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sipfleet.node.focus import peer_of
from sipfleet.node.metrics import NodeMetrics
from sipfleet.node.presentation import SENDER_HEADER, sender_name
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.sip import Dialog, NameAddr, SipRequest, SipResponse, new_request
from sipfleet.node.sip.ids import new_call_id, new_tag
from sipfleet.node.stack import RequestContext, SipStack
from sipfleet.node.transport import Peer

MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 2.0
DialogKey = tuple[str, str]  # (Call-ID, our tag)


@dataclass
class CrowdStats:
    """What the members experienced (counted on the member side)."""

    joined: int = 0
    left: int = 0
    redirects: int = 0
    transfers: int = 0
    full_retries: int = 0
    join_failures: int = 0
    dropped: int = 0
    chats_sent: int = 0
    received: dict[str, set[str]] = field(default_factory=dict)

    def deliveries(self, body: str) -> int:
        """Members that received the group MESSAGE ``body``."""
        return len(self.received.get(body, ()))


@dataclass(eq=False)
class Member:
    name: str
    aor: str
    contact: str
    dialog: Dialog | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def shard(self) -> str | None:
        """The shard URI this member is joined to, if any."""
        return self.dialog.remote_target if self.dialog else None


class Crowd:
    """Members of one group, joined through ``main`` (host, port)."""

    def __init__(
        self,
        group: str,
        main: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        on_event: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.group = group
        self.main = main
        self.host = host
        self.stats = CrowdStats()
        self.members: list[Member] = []
        self._on_event = on_event
        self._stack: SipStack | None = None
        self._dialogs: dict[DialogKey, Member] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # Generous per-source limits: the servers are the only peers.
        limiter = RateLimiter(rate=10_000.0, burst=10_000.0)
        self._stack = SipStack(self.host, 0, self, NodeMetrics(), limiter)
        await self._stack.start()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    @property
    def stack(self) -> SipStack:
        if self._stack is None:
            raise RuntimeError("the crowd is not started")
        return self._stack

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.stack.port}"

    def add(self, name: str) -> Member:
        member = Member(name, f"sip:{name}@{self.host}", f"sip:{name}@{self.sent_by}")
        self.members.append(member)
        return member

    def joined(self) -> list[Member]:
        return [m for m in self.members if m.dialog is not None]

    # ---- requests we send ------------------------------------------------------------
    async def _transaction(self, request: SipRequest, peer: Peer) -> SipResponse | None:
        """The final response to ``request`` (None: timed out)."""
        done: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()

        def on_response(response: SipResponse | None) -> None:
            if (response is None or response.status >= 200) and not done.done():
                done.set_result(response)

        self.stack.send_request(request, peer, on_response)
        return await done

    async def _invite(self, member: Member, uri: str) -> tuple[SipRequest, SipResponse | None]:
        invite = new_request(
            "INVITE",
            uri,
            from_=f"<{member.aor}>;tag={new_tag()}",
            to=f"<{self.group}>",
            call_id=new_call_id(self.host),
            cseq=1,
            sent_by=self.sent_by,
            contact=member.contact,
        )
        return invite, await self._transaction(invite, peer_of(uri))

    def _adopt(self, member: Member, invite: SipRequest, ok: SipResponse) -> Dialog:
        """ACK a 2xx and make its dialog the member's current one."""
        dialog = Dialog.as_uac(invite, ok, local_contact=member.contact)
        ack = dialog.ack(invite.cseq[0], sent_by=self.sent_by)
        self.stack.transmit(ack.to_bytes(), peer_of(dialog.remote_target))
        self._dialogs[(dialog.call_id, dialog.local_tag)] = member
        member.dialog = dialog
        return dialog

    async def _reach(self, member: Member, uri: str, deadline: float) -> Dialog | None:
        """INVITE ``uri``, following redirects and retrying "full" until ``deadline``."""
        loop = asyncio.get_running_loop()
        hops = 0
        while loop.time() < deadline:
            invite, response = await self._invite(member, uri)
            if response is None:
                break
            if 300 <= response.status < 400 and response.contact and hops < MAX_REDIRECTS:
                self.stats.redirects += 1
                hops += 1
                uri = response.contact.uri
                continue
            if response.status in (480, 486, 503):
                self.stats.full_retries += 1
                await asyncio.sleep(retry_after(response))
                uri, hops = self._group_target(), 0
                continue
            if response.status < 300:
                return self._adopt(member, invite, response)
            break
        return None

    def _group_target(self) -> str:
        user = self.group.split(":", 1)[1].split("@", 1)[0]
        return f"sip:{user}@{self.main[0]}:{self.main[1]}"

    async def join(self, member: Member, deadline: float) -> bool:
        async with member.lock:
            dialog = await self._reach(member, self._group_target(), deadline)
            if dialog is None:
                self.stats.join_failures += 1
                self._on_event(f"{member.name} could not join")
                return False
            self.stats.joined += 1
            return True

    async def leave(self, member: Member) -> bool:
        async with member.lock:
            dialog = member.dialog
            if dialog is None:
                return False
            member.dialog = None
            bye = dialog.create_request("BYE", sent_by=self.sent_by)
            response = await self._transaction(bye, peer_of(dialog.remote_target))
            self._dialogs.pop((dialog.call_id, dialog.local_tag), None)
            self.stats.left += 1
            return response is not None and response.status < 300

    async def chat(self, member: Member, text: str) -> bool:
        """Send ``text`` to the group from ``member``; True when its server took it."""
        dialog = member.dialog
        if dialog is None:
            return False
        message = dialog.create_request(
            "MESSAGE", sent_by=self.sent_by, body=text.encode(), content_type="text/plain"
        )
        self.stats.chats_sent += 1
        response = await self._transaction(message, peer_of(dialog.remote_target))
        return response is not None and response.status < 300

    async def _move(self, member: Member, target: str) -> None:
        """Follow a REFER: join ``target``; the old server then BYEs the old dialog."""
        loop = asyncio.get_running_loop()
        async with member.lock:
            if member.dialog is None:
                return  # left meanwhile
            old = member.shard
            if await self._reach(member, target, loop.time() + 30.0) is not None:
                self.stats.transfers += 1
                self._on_event(f"{member.name} transferred {_user(old)} -> {_user(target)}")

    # ---- requests we receive (the stack's Application protocol) ---------------------
    def handle_request(self, ctx: RequestContext) -> None:
        request = ctx.request
        member = self._dialogs.get((request.call_id, request.to_tag or ""))
        if member is None:
            ctx.respond(481)
            return
        key = (request.call_id, request.to_tag or "")
        current = member.dialog is not None and member.dialog.id[:2] == key
        if request.method == "MESSAGE":
            ctx.respond(200)
            # The text as written: without the "alice: " a focus may put first.
            sender = sender_name((request.headers.get(SENDER_HEADER) or "").strip("<>"))
            body = request.body.decode(errors="replace").removeprefix(f"{sender}: ")
            self.stats.received.setdefault(body, set()).add(member.name)
        elif request.method == "BYE":
            ctx.respond(200)
            del self._dialogs[key]
            if current:  # the server ended the session we were in
                member.dialog = None
                self.stats.dropped += 1
                self._on_event(f"{member.name} was sent BYE by its server")
        elif request.method == "REFER" and not current:
            ctx.respond(403, reason="Already Moved")  # a REFER on a dialog we left
        elif request.method == "REFER":
            refer_to = NameAddr.parse(request.headers.get("Refer-To") or "")
            ctx.respond(202, [("Refer-Sub", "false")])
            self._spawn(self._move(member, refer_to.uri.split("?", 1)[0]))
        elif request.method == "OPTIONS":
            ctx.respond(200)
        else:
            ctx.respond(405, [("Allow", "MESSAGE, BYE, REFER, OPTIONS")])

    def handle_ack(self, request: SipRequest) -> None:
        """Members never answer an INVITE, so no ACK is expected."""

    def handle_unacked(self, request: SipRequest) -> None:
        """Members never answer an INVITE, so no 2xx goes unacknowledged."""

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, timeout: float) -> None:
        """Wait (bounded) for transfers still in progress."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True),
                                       timeout)  # fmt: skip


def retry_after(response: SipResponse) -> float:
    """Seconds to wait before joining again after a "full" answer (bounded)."""
    text = (response.headers.get("Retry-After") or "").split(";", 1)[0].strip()
    seconds = float(text) if text.isdigit() else 1.0
    return min(max(seconds, 0.2), MAX_RETRY_AFTER)


def _user(uri: str | None) -> str:
    """The user part of a shard URI (``conf-demo-node-1``), for log lines."""
    if not uri:
        return "?"
    return uri.split(":", 1)[-1].split("@", 1)[0]
