"""Conference subscriptions (RFC 4575, RFC 6665) in virtual time."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from sipfleet.node import subscriptions as subs_module
from sipfleet.node.focus import peer_of
from sipfleet.node.sip import Headers, SipRequest
from sipfleet.node.subscriptions import (
    MAX_EXPIRES,
    NOTIFY_DELAY,
    Respond,
    SendNotify,
    SubscriptionAction,
    Subscriptions,
)

GROUP = "sip:conf@example.com"
CONTACT = "<sip:main@127.0.0.2:5060>"
NS = "{urn:ietf:params:xml:ns:conference-info}"


def subscribe(
    *,
    cseq: int = 1,
    expires: str | None = "600",
    to_tag: str | None = None,
    event: str = "conference",
) -> SipRequest:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bKs"),
        ("Record-Route", "<sip:edge@127.0.0.7;lr>"),
        ("From", "<sip:watcher@x>;tag=w"),
        ("To", f"<{GROUP}>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", "sub-1"),
        ("CSeq", f"{cseq} SUBSCRIBE"),
        ("Contact", "<sip:watcher@127.0.0.1:6000>"),
        ("Event", event),
    ]
    if expires is not None:
        headers.append(("Expires", expires))
    return SipRequest("SUBSCRIBE", GROUP, Headers(headers))


class Roster:
    def __init__(self) -> None:
        self.members: frozenset[str] = frozenset({"sip:a@x"})

    def __call__(self, group: str) -> frozenset[str]:
        assert group == GROUP
        return self.members


def run(core: Subscriptions, roster: Roster, until: float) -> list[SubscriptionAction]:
    out: list[SubscriptionAction] = []
    while (deadline := core.next_deadline()) is not None and deadline <= until:
        out += core.tick(deadline, roster)
    return out


def users(notify: SubscriptionAction) -> dict[str, str | None]:
    assert isinstance(notify, SendNotify)
    doc = ET.fromstring(notify.body)
    return {u.get("entity") or "": u.get("state") for u in doc.iter(f"{NS}user")}


def test_full_then_coalesced_partial_then_expiry() -> None:
    core, roster = Subscriptions(), Roster()
    answer, full = core.on_subscribe(subscribe(), GROUP, CONTACT, peer_of, "udp", roster, 0.0)
    assert isinstance(answer, Respond) and answer.status == 200 and answer.to_tag
    assert ("Expires", "600") in answer.headers and ("Contact", CONTACT) in answer.headers
    assert users(full) == {"sip:a@x": "full"}
    assert isinstance(full, SendNotify)
    notify = full.subscription.subscriber.request("NOTIFY", "127.0.0.2:5060", full.extra)
    # The NOTIFY takes the subscription dialog's route set (RFC 6665 4.1.2, RFC 3261 12)
    assert notify.request.headers.get_list("Route") == ["<sip:edge@127.0.0.7;lr>"]
    assert notify.request.headers.get("Subscription-State") == "active;expires=600"
    roster.members = frozenset({"sip:a@x", "sip:b@x"})
    core.changed(GROUP, 1.0)
    core.changed(GROUP, 1.01)  # coalesced with the first
    roster.members = frozenset({"sip:b@x", "sip:c@x"})
    (partial,) = run(core, roster, 1.0 + NOTIFY_DELAY)
    assert users(partial) == {"sip:b@x": "full", "sip:c@x": "full", "sip:a@x": "deleted"}
    assert run(core, roster, 599.0) == []
    assert len(core) == 1
    run(core, roster, 600.0)
    assert len(core) == 0  # expired
    core.changed(GROUP, 601.0)
    assert core.next_deadline() is None  # nobody to tell


def test_refresh_order_and_ending_answers() -> None:
    core, roster = Subscriptions(), Roster()
    answer, full = core.on_subscribe(subscribe(), GROUP, CONTACT, peer_of, "udp", roster, 0.0)
    assert isinstance(answer, Respond) and isinstance(full, SendNotify)
    tag = answer.to_tag
    refresh = subscribe(cseq=2, expires="99999", to_tag=tag)
    again, _ = core.on_subscribe(refresh, None, CONTACT, peer_of, "udp", roster, 10.0)
    assert isinstance(again, Respond) and ("Expires", str(MAX_EXPIRES)) in again.headers
    stale = subscribe(cseq=2, to_tag=tag)
    assert core.on_subscribe(stale, None, CONTACT, peer_of, "udp", roster, 11.0) == [
        Respond(500, reason="CSeq Out Of Order")
    ]
    core.notify_answered(full.subscription, 481)  # the subscriber forgot it
    assert len(core) == 0
    gone = subscribe(cseq=3, to_tag=tag)
    assert core.on_subscribe(gone, None, CONTACT, peer_of, "udp", roster, 12.0) == [Respond(481)]


def test_unsubscribe_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    core, roster = Subscriptions(), Roster()
    _, last = core.on_subscribe(subscribe(expires="0"), GROUP, CONTACT, peer_of, "udp", roster, 0.0)
    assert isinstance(last, SendNotify) and len(core) == 0
    assert last.extra.items[1][2] == "terminated;reason=timeout"
    (bad_event,) = core.on_subscribe(
        subscribe(event="presence"), GROUP, CONTACT, peer_of, "udp", roster, 0
    )
    assert isinstance(bad_event, Respond) and bad_event.status == 489
    (bad_expires,) = core.on_subscribe(
        subscribe(expires="soon"), GROUP, CONTACT, peer_of, "udp", roster, 0
    )
    assert isinstance(bad_expires, Respond) and bad_expires.status == 400
    (no_group,) = core.on_subscribe(subscribe(), None, CONTACT, peer_of, "udp", roster, 0)
    assert isinstance(no_group, Respond) and no_group.status == 404
    monkeypatch.setattr(subs_module, "MAX_SUBSCRIPTIONS", 1)
    core.on_subscribe(subscribe(), GROUP, CONTACT, peer_of, "udp", roster, 0)
    second = subscribe()
    second.headers.set("Call-ID", "sub-2")
    (full,) = core.on_subscribe(second, GROUP, CONTACT, peer_of, "udp", roster, 0)
    assert isinstance(full, Respond) and full.status == 503  # bounded
