"""SUBSCRIBE Event: conference (RFC 4575): a full NOTIFY first, then partial updates.

The roster covers members on every server of the group (learned over the tree).
Each subscription is a dialog (RFC 6665 4.1.2, RFC 3261 12): its NOTIFYs follow
its route set and a refreshing SUBSCRIBE is checked for CSeq order and refreshes
its remote target.

Sans-I/O, like sip/transaction.py: every call takes `now` (seconds on the
shell's monotonic clock) and returns actions; the shell answers, sends the
NOTIFYs, reports their answers (`notify_answered`) and calls `tick(now)` at
`next_deadline()`. The shell passes `roster`, a read-only query for a group's
members on every server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sipfleet.node.focus import Locate, Member
from sipfleet.node.schedule import Schedule
from sipfleet.node.sip import SipParseError, SipRequest
from sipfleet.node.sip.confinfo import CONFERENCE_INFO_TYPE, Endpoint, User, conference_info
from sipfleet.node.sip.dialog import Dialog
from sipfleet.node.sip.ids import new_tag
from sipfleet.node.sip.message import HeaderBlock
from sipfleet.node.sip.target import UnreachableTarget

MAX_EXPIRES = 3600  # seconds; longer requests are cut to this (RFC 6665 4.2.1.1)
NOTIFY_DELAY = 0.05  # seconds roster changes are coalesced before partial NOTIFYs
MAX_SUBSCRIPTIONS = 10_000  # per server; more are refused 503 (a peer cannot make us hold more)
RETRY_AFTER = 60  # seconds, in that 503
# NOTIFY answers that end the subscription (RFC 6665 4.2.2: 481 and the like; 408 timeout)
ENDING = frozenset({404, 405, 408, 481, 489, 501})
Roster = Callable[[str], frozenset[str]]


@dataclass(eq=False)
class Subscription:
    group: str
    subscriber: Member
    expires: int  # seconds, as granted
    version: int = 0  # conference-info version of the last NOTIFY
    known: frozenset[str] = frozenset()  # members the subscriber was last told about


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer the SUBSCRIBE (status, header fields, To tag of the dialog, reason)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    to_tag: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SendNotify:
    """Send NOTIFY in the subscription's dialog; report its final answer with
    `notify_answered(subscription, ...)`."""

    subscription: Subscription
    extra: HeaderBlock
    body: bytes


SubscriptionAction = Respond | SendNotify
_Key = tuple[str, object]  # ("flush", group) | ("expire", subscription)


def _user(aor: str, state: str) -> User:
    endpoints = [] if state == "deleted" else [Endpoint(aor)]
    return User(aor, endpoints=endpoints, state=state)


class Subscriptions:
    """Every conference subscription on this server."""

    def __init__(self) -> None:
        self._by_dialog: dict[tuple[str, str], Subscription] = {}
        self._by_group: dict[str, set[Subscription]] = {}
        self._timers: Schedule[_Key] = Schedule()

    def __len__(self) -> int:
        return len(self._by_dialog)

    def on_subscribe(
        self,
        request: SipRequest,
        group: str | None,
        local_contact: str,
        locate: Locate,
        transport: str,
        roster: Roster,
        now: float,
    ) -> list[SubscriptionAction]:
        """A SUBSCRIBE (new, or a refresh in its dialog) that arrived over `transport`;
        `group` is the group its Request-URI names (None: no such group here).
        `local_contact` is our Contact value; `locate` finds the subscriber's next
        hop. Answers 489 for another event, 400
        for a bad Expires or Contact, 481 for an unknown dialog, 500 for a CSeq
        out of order, 404 for no group, 403 for a Contact this server cannot reach,
        503 when MAX_SUBSCRIPTIONS are held; else
        200 and a full NOTIFY (Expires 0: a last NOTIFY, then it ends)."""
        event = (request.headers.get("Event") or "").split(";", 1)[0].strip().lower()
        if event != "conference":
            return [Respond(489, (("Allow-Events", "conference"),))]
        raw = (request.headers.get("Expires") or str(MAX_EXPIRES)).strip()
        if not raw.isdigit():
            return [Respond(400, (("Warning", '399 sipfleet "bad Expires"'),))]
        expires = min(int(raw), MAX_EXPIRES)
        if request.to_tag is not None:
            found = self._by_dialog.get((request.call_id, request.to_tag))
            if found is None:
                return [Respond(481)]
            if found.subscriber.dialog.receive(request) is not None:
                return [Respond(500, reason="CSeq Out Of Order")]
            sub = found
        else:
            if group is None:
                return [Respond(404, reason="No Such Group")]
            contact = request.contact
            if contact is None or not contact.uri.lower().startswith(("sip:", "sips:")):
                return [
                    Respond(400, (("Warning", '399 sipfleet "SUBSCRIBE needs a SIP Contact"'),))
                ]
            if len(self._by_dialog) >= MAX_SUBSCRIPTIONS:
                return [Respond(503, (("Retry-After", str(RETRY_AFTER)),), reason="Too Many")]
            dialog = Dialog.as_uas(request, new_tag(), local_contact, transport=transport)
            subscriber = Member(request.from_.uri, dialog, locate)
            try:
                subscriber.peer  # noqa: B018 -- its next hop must be reachable (RFC 3263 4)
            except (UnreachableTarget, SipParseError) as exc:
                return [Respond(403, (("Warning", f'399 sipfleet "Contact: {exc}"'),))]
            sub = Subscription(group, subscriber, expires)
            self._by_dialog[sub.subscriber.key] = sub
            self._by_group.setdefault(group, set()).add(sub)
        sub.expires = expires
        answer = Respond(
            200,
            (("Expires", str(expires)), ("Contact", local_contact)),
            to_tag=sub.subscriber.dialog.local_tag,
        )
        notify = self._notify(sub, roster(sub.group), full=True)
        if expires == 0:
            self._drop(sub)
        else:
            self._timers.arm(("expire", sub), now + expires)
        return [answer, *notify]

    def changed(self, group: str, now: float) -> None:
        """The group's roster changed: partial NOTIFYs at the next `tick` after
        NOTIFY_DELAY (coalescing bursts)."""
        if group in self._by_group and not self._timers.armed(("flush", group)):
            self._timers.arm(("flush", group), now + NOTIFY_DELAY)

    def notify_answered(self, sub: Subscription, status: int | None) -> None:
        """A NOTIFY's final answer (`None`: it timed out); some end the subscription."""
        if status is None or status in ENDING:
            self._drop(sub)

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def tick(self, now: float, roster: Roster) -> list[SubscriptionAction]:
        """Fire what is due: coalesced partial NOTIFYs, expired subscriptions."""
        out: list[SubscriptionAction] = []
        for kind, target in self._timers.due(now):
            if kind == "expire":
                assert isinstance(target, Subscription)
                self._drop(target)
                continue
            assert isinstance(target, str)
            members = roster(target)
            for sub in list(self._by_group.get(target, ())):
                out += self._notify(sub, members, full=False)
        return out

    def _notify(
        self, sub: Subscription, members: frozenset[str], *, full: bool
    ) -> list[SubscriptionAction]:
        added, removed = members - sub.known, sub.known - members
        if not full and not added and not removed:
            return []
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
        extra = HeaderBlock(
            [
                ("Event", "conference"),
                ("Subscription-State", state),
                ("Content-Type", CONFERENCE_INFO_TYPE),
            ]
        )
        return [SendNotify(sub, extra, body)]

    def _drop(self, sub: Subscription) -> None:
        self._timers.cancel(("expire", sub))
        self._by_dialog.pop(sub.subscriber.key, None)
        subs = self._by_group.get(sub.group)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_group[sub.group]
