"""SUBSCRIBE Event: conference (RFC 4575): a full NOTIFY first, then partial updates.

The roster covers members on every server of the group (learned over the tree).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipfleet.node.focus import Member
from sipfleet.node.sip import SipResponse
from sipfleet.node.sip.confinfo import CONFERENCE_INFO_TYPE, Endpoint, User, conference_info
from sipfleet.node.sip.ids import new_tag
from sipfleet.node.sip.target import UnreachableTarget

if TYPE_CHECKING:
    from sipfleet.node.node import Node
    from sipfleet.node.stack import RequestContext

MAX_EXPIRES = 3600
NOTIFY_DELAY = 0.05


@dataclass(eq=False)
class Subscription:
    group: str
    dialog: Member
    expires: int
    version: int = 0
    known: frozenset[str] = frozenset()
    timer: asyncio.TimerHandle | None = None


class Subscriptions:
    def __init__(self, node: Node) -> None:
        self._node = node
        self._by_dialog: dict[tuple[str, str], Subscription] = {}
        self._by_group: dict[str, set[Subscription]] = {}
        self._due: dict[str, asyncio.TimerHandle] = {}

    def close(self) -> None:
        for handle in self._due.values():
            handle.cancel()
        for sub in self._by_dialog.values():
            if sub.timer is not None:
                sub.timer.cancel()

    def on_subscribe(self, ctx: RequestContext) -> None:
        request = ctx.request
        event = (request.headers.get("Event") or "").split(";", 1)[0].strip().lower()
        if event != "conference":
            ctx.respond(489, [("Allow-Events", "conference")])
            return
        raw = (request.headers.get("Expires") or str(MAX_EXPIRES)).strip()
        if not raw.isdigit():
            ctx.respond(400, [("Warning", '399 sipfleet "bad Expires"')])
            return
        expires = min(int(raw), MAX_EXPIRES)
        if request.to_tag is not None:
            sub = self._by_dialog.get((request.call_id, request.to_tag))
            if sub is None:
                ctx.respond(481)
                return
        else:
            try:
                group, _ = self._node.resolve(request)
            except LookupError:
                ctx.respond(404, reason="No Such Group")
                return
            contact = request.contact
            if contact is None or not contact.uri.lower().startswith(("sip:", "sips:")):
                ctx.respond(400, [("Warning", '399 sipfleet "SUBSCRIBE needs a SIP Contact"')])
                return
            try:
                target = self._node.stack.target_of(contact.uri, ctx.peer)
            except UnreachableTarget as exc:
                ctx.respond(403, [("Warning", f'399 sipfleet "Contact: {exc}"')])
                return
            dialog = Member(
                request.from_.uri,
                contact.uri,
                target,
                request.call_id,
                request.from_tag or "",
                new_tag(),
                group,
            )
            sub = Subscription(group, dialog, expires)
            self._by_dialog[dialog.key] = sub
            self._by_group.setdefault(group, set()).add(sub)
        sub.expires = expires
        ctx.respond(
            200,
            [
                ("Expires", str(expires)),
                ("Contact", f"<{self._node.stack.local_uri(self._node.name, ctx.peer)}>"),
            ],
            to_tag=sub.dialog.local_tag,
        )
        self._notify(sub, full=True)
        if sub.timer is not None:
            sub.timer.cancel()
        if expires == 0:
            self._drop(sub)
        else:
            sub.timer = asyncio.get_running_loop().call_later(expires, self._drop, sub)

    def changed(self, group: str) -> None:
        """The group's roster changed: send partial updates soon (coalescing bursts)."""
        if group in self._by_group and group not in self._due:
            loop = asyncio.get_running_loop()
            self._due[group] = loop.call_later(NOTIFY_DELAY, self._flush, group)

    def _flush(self, group: str) -> None:
        self._due.pop(group, None)
        for sub in list(self._by_group.get(group, ())):
            self._notify(sub, full=False)

    def _notify(self, sub: Subscription, *, full: bool) -> None:
        members = frozenset(self._node.group_members(sub.group))
        added, removed = members - sub.known, sub.known - members
        if not full and not added and not removed:
            return
        sub.version += 1
        if full:
            users = [_user(m, "full") for m in sorted(members)]
        else:
            users = [_user(m, "full") for m in sorted(added)]
            users += [_user(m, "deleted") for m in sorted(removed)]
        body = conference_info(
            sub.group,
            sub.version,
            users,
            state="full" if full else "partial",
            user_count=len(members),
        )
        sub.known = members
        state = f"active;expires={sub.expires}" if sub.expires else "terminated;reason=timeout"
        extra = (
            f"Event: conference\r\nSubscription-State: {state}\r\n"
            f"Content-Type: {CONFERENCE_INFO_TYPE}\r\n"
            f"Contact: <{self._node.stack.local_uri(self._node.name, sub.dialog.peer)}>\r\n"
        ).encode()

        def done(response: SipResponse | None) -> None:
            if response is None or response.status in (404, 405, 408, 481, 489, 501):
                self._drop(sub)

        self._node.send_in_dialog(sub.dialog, "NOTIFY", extra, body, done)

    def _drop(self, sub: Subscription) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
        self._by_dialog.pop(sub.dialog.key, None)
        subs = self._by_group.get(sub.group)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_group[sub.group]


def _user(aor: str, state: str) -> User:
    endpoints = [] if state == "deleted" else [Endpoint(aor)]
    return User(aor, endpoints=endpoints, state=state)
