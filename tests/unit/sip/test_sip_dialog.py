"""Dialogs and the body helpers (sipfrag, Replaces, CPIM, conference-info)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from sipfleet.node.sip import (
    CpimMessage,
    Dialog,
    Endpoint,
    Headers,
    Replaces,
    SipParseError,
    SipRequest,
    SipUri,
    User,
    build_sipfrag,
    conference_info,
    incoming_dialog_id,
    make_response,
    new_branch,
    new_call_id,
    new_request,
    new_tag,
    parse_message,
    parse_sipfrag,
    refer_target,
    replaces_in,
    subscription_state,
    unwrap_cpim,
    wrap_cpim,
)


def invite() -> SipRequest:
    return SipRequest(
        "INVITE",
        "sip:conf@127.0.0.1",
        Headers(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.2;branch=z9hG4bK1"),
                ("Record-Route", "<sip:p1;lr>, <sip:p2;lr>"),
                ("From", '"Alice" <sip:alice@example.com>;tag=remote'),
                ("To", "<sip:conf@example.com>"),
                ("Call-ID", "call-9"),
                ("CSeq", "7 INVITE"),
                ("Contact", "<sip:alice@127.0.0.2:5062>"),
            ]
        ),
    )


def test_uas_dialog_builds_in_dialog_requests() -> None:
    request = invite()
    dialog = Dialog.as_uas(request, "local", local_contact="sip:conf@127.0.0.1:5060")
    assert dialog.id == ("call-9", "local", "remote")
    assert dialog.route_set == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert dialog.remote_cseq == 7
    refer = dialog.create_request(
        "REFER",
        sent_by="127.0.0.1:5060",
        headers=[("Refer-To", "<sip:conf-x@n2>")],
    )
    bye = dialog.create_request("BYE", sent_by="127.0.0.1:5060", transport="tcp")
    assert refer.uri == "sip:alice@127.0.0.2:5062"
    assert refer.cseq == (1, "REFER") and bye.cseq == (2, "BYE")
    assert refer.from_tag == "local" and refer.to_tag == "remote"
    assert refer.from_.uri == "sip:conf@example.com" and refer.to.display == "Alice"
    assert refer.headers.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert refer.contact is not None and refer.contact.uri == "sip:conf@127.0.0.1:5060"
    assert bye.contact is None and bye.via.transport == "TCP"
    assert refer.via.branch != bye.via.branch
    assert refer.headers.get("Refer-To") == "<sip:conf-x@n2>"
    assert incoming_dialog_id(parse_message(refer.to_bytes())) == ("call-9", "remote", "local")


def test_uac_dialog_and_ack() -> None:
    request = invite()
    request.headers.set("From", "<sip:conf@n1>;tag=mine")
    request.headers.set("To", "<sip:bob@example.com>")
    ok = make_response(request, 200, to_tag="theirs", headers=[("Contact", "<sip:bob@h>")])
    dialog = Dialog.as_uac(request, ok)
    assert dialog.id == ("call-9", "mine", "theirs")
    assert dialog.route_set == ["<sip:p2;lr>", "<sip:p1;lr>"]
    assert dialog.local_cseq == 7 and dialog.remote_target == "sip:bob@h"
    ack = dialog.ack(7, sent_by="n1:5060")
    assert ack.cseq == (7, "ACK") and ack.uri == "sip:bob@h" and dialog.local_cseq == 7
    assert incoming_dialog_id(ok) == dialog.id
    message = dialog.create_request("MESSAGE", sent_by="n1", body=b"hi", content_type="text/plain")
    assert message.cseq == (8, "MESSAGE") and message.headers.get("Content-Type") == "text/plain"
    assert parse_message(message.to_bytes()).body == b"hi"


def test_dialog_needs_a_contact() -> None:
    request = invite()
    request.headers.remove("Contact")
    with pytest.raises(SipParseError, match="Contact"):
        Dialog.as_uas(request, "local")


def test_incoming_requests_order_and_target_refresh() -> None:
    request = invite()
    dialog = Dialog.as_uas(request, "local")
    reinvite = invite()
    reinvite.headers.set("CSeq", "8 INVITE")
    reinvite.headers.set("Contact", "<sip:alice@new-host>")
    assert dialog.receive(reinvite) is None
    assert dialog.remote_target == "sip:alice@new-host" and dialog.remote_cseq == 8
    old = invite()
    old.method = "BYE"
    old.headers.set("CSeq", "8 BYE")
    assert dialog.receive(old) == 500
    ack = invite()
    ack.method = "ACK"
    ack.headers.set("CSeq", "8 ACK")
    assert dialog.receive(ack) is None


def test_out_of_dialog_request_and_ids() -> None:
    r = new_request(
        "INVITE",
        "sip:alice@h",
        from_="<sip:conf-x@n2>;tag=a",
        to="<sip:alice@h>",
        call_id="c",
        cseq=1,
        sent_by="127.0.0.5:5060",
        contact="sip:conf-x@127.0.0.5",
        headers=[("Replaces", "x;to-tag=1;from-tag=2")],
    )
    parsed = parse_message(r.to_bytes())
    assert isinstance(parsed, SipRequest)
    assert parsed.max_forwards == 70 and parsed.via.params["rport"] is None
    assert incoming_dialog_id(parsed) is None  # no To tag: not in a dialog


# -- bodies ----------------------------------------------------------------------------


def test_sipfrag() -> None:
    assert build_sipfrag(100, "Trying") == b"SIP/2.0 100 Trying\r\n"
    assert parse_sipfrag(b"SIP/2.0 200 OK\r\nContact: x\r\n") == (200, "OK")
    assert parse_sipfrag(b"SIP/2.0 503") == (503, "")
    for bad in (b"", b"INVITE sip:x SIP/2.0", b"SIP/2.0 2000 Nope"):
        with pytest.raises(SipParseError):
            parse_sipfrag(bad)
    assert subscription_state("active", expires=60) == "active;expires=60"
    assert subscription_state("terminated", reason="noresource") == "terminated;reason=noresource"


def test_replaces_round_trip_and_refer_to() -> None:
    value = Replaces("12@h", "to1", "from1", early_only=True)
    assert str(value) == "12@h;to-tag=to1;from-tag=from1;early-only"
    assert Replaces.parse(str(value)) == value
    with pytest.raises(SipParseError):
        Replaces.parse("12@h;to-tag=x")
    target = refer_target("sip:conf-x@n2", Replaces("a@b", "t", "f"))
    assert target == "<sip:conf-x@n2?Replaces=a%40b%3Bto-tag%3Dt%3Bfrom-tag%3Df>"
    uri = SipUri.parse(target[1:-1])
    assert replaces_in(uri) == Replaces("a@b", "t", "f")
    assert refer_target("sip:x@y") == "<sip:x@y>"
    assert replaces_in(SipUri.parse("sip:x@y?Subject=hi")) is None


def test_cpim_round_trip() -> None:
    message = CpimMessage(
        "<sip:alice@example.com>",
        "<sip:conf@example.com>",
        "text/plain; charset=utf-8",
        "héllo".encode(),
        [("DateTime", "2026-11-25T12:00:00Z")],
    )
    data = wrap_cpim(message)
    assert data.startswith(b"From: <sip:alice@example.com>\r\nTo: <sip:conf@example.com>\r\n")
    assert unwrap_cpim(data) == message
    for bad in (
        b"From: a\r\n\r\nno body separator",
        b"To: b\r\n\r\nContent-Type: x\r\n\r\n",
        b"junk\r\n\r\nA: b\r\n\r\n",
    ):
        with pytest.raises(SipParseError):
            unwrap_cpim(bad)


def test_conference_info_full_and_partial() -> None:
    ns = "{urn:ietf:params:xml:ns:conference-info}"
    alice = User("sip:alice@h", "Alice", [Endpoint("sip:alice@127.0.0.2")])
    full = ET.fromstring(
        conference_info("sip:conf@h", 3, [alice, User("sip:bob@h")], subject="Chat")
    )
    assert full.tag == f"{ns}conference-info"
    assert (full.get("entity"), full.get("state"), full.get("version")) == (
        "sip:conf@h",
        "full",
        "3",
    )
    assert full.findtext(f"{ns}conference-description/{ns}subject") == "Chat"
    assert full.findtext(f"{ns}conference-state/{ns}user-count") == "2"
    users = full.findall(f"{ns}users/{ns}user")
    assert [u.get("entity") for u in users] == ["sip:alice@h", "sip:bob@h"]
    assert users[0].findtext(f"{ns}display-text") == "Alice"
    assert users[0].findtext(f"{ns}endpoint/{ns}status") == "connected"
    gone = User("sip:bob@h", state="deleted")
    partial = ET.fromstring(conference_info("sip:conf@h", 4, [gone], state="partial"))
    assert partial.get("state") == "partial"
    assert partial.find(f"{ns}conference-state") is None
    assert partial.find(f"{ns}users/{ns}user").get("state") == "deleted"  # type: ignore[union-attr]


def test_ids() -> None:
    assert new_branch().startswith("z9hG4bK") and new_branch() != new_branch()
    assert new_call_id("127.0.0.1").endswith("@127.0.0.1")
    assert new_tag() != new_tag()
