"""check_request and make_response: one row per rule."""

from __future__ import annotations

import pytest
from sipfleet.node.sip import (
    Headers,
    Policy,
    SipParseError,
    SipRequest,
    check_request,
    make_response,
    parse_message,
    reason_phrase,
)


def req(
    method: str = "MESSAGE", uri: str = "sip:conf@example.com", **fields: str | None
) -> SipRequest:
    values: dict[str, str | None] = {
        "Via": "SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKx",
        "From": "<sip:a@example.com>;tag=1",
        "To": "<sip:conf@example.com>",
        "Call-ID": "c",
        "CSeq": f"1 {method}",
        "Max-Forwards": "70",
    }
    values.update({name.replace("_", "-"): value for name, value in fields.items()})
    headers = Headers((name, value) for name, value in values.items() if value is not None)
    return SipRequest(method, uri, headers)


@pytest.mark.parametrize(
    ("request_", "status", "header"),
    [
        (req(), None, None),
        (req(Via=None), 400, "Warning"),
        (req(Call_ID=None), 400, "Warning"),
        (req(CSeq="1 INVITE"), 400, "Warning"),
        (req(CSeq="99999999999 MESSAGE"), 400, "Warning"),
        (req(From="x"), 400, "Warning"),
        (req(Max_Forwards="abc"), 400, "Warning"),
        (req(Contact="<sip:a@b"), 400, "Warning"),
        (req(Via="SIP/2.0/UDP h;branch=z9hG4bK"), 400, "Warning"),
        (req(uri="mailto:x@y"), 416, "Warning"),
        (req(uri="sip:x@y?Route=z"), 400, "Warning"),
        (req("FOO"), 501, "Allow"),
        (req("REGISTER"), 405, "Allow"),
        (req(Max_Forwards="0"), 483, None),
        (req("OPTIONS", Max_Forwards="0"), None, None),
        (req(Require="replaces, foo"), 420, "Unsupported"),
        (req("INVITE", Accept="text/html", Contact="<sip:a@h>"), 406, "Accept"),
        (req("INVITE", Accept="application/*", Contact="<sip:a@h>"), None, None),
        (req("INVITE", Accept="*/*, text/html", Contact="*"), None, None),
    ],
)
def test_check_request(request_: SipRequest, status: int | None, header: str | None) -> None:
    reply = check_request(request_)
    if status is None:
        assert reply is None
        return
    assert reply is not None and reply.status == status
    assert reply.reason == reason_phrase(status)
    if header is not None:
        assert reply.headers.get(header)


def test_repeated_single_value_header() -> None:
    r = req()
    r.headers.add("Call-ID", "other")
    reply = check_request(r)
    assert reply is not None and "more than one Call-ID" in (reply.headers.get("Warning") or "")


def test_unsupported_version_on_a_built_request() -> None:
    r = req()
    r.version = "SIP/3.0"
    reply = check_request(r)
    assert reply is not None and reply.status == 505


def test_policy_options() -> None:
    lenient = Policy(reject_zero_max_forwards=False)
    assert check_request(req(Max_Forwards="0"), lenient) is None
    typed = Policy(accepted_types=frozenset({"text/plain"}))
    plain = req(Content_Type="text/plain; charset=utf-8")
    plain.body = b"hi"
    assert check_request(plain, typed) is None
    html = req(Content_Type="text/html")
    html.body = b"<p>"
    reply = check_request(html, typed)
    assert reply is not None and reply.status == 415 and reply.headers.get("Accept") == "text/plain"
    assert check_request(html) is None  # no type check by default


def test_ack_is_never_answered() -> None:
    with pytest.raises(SipParseError):
        check_request(req("ACK", CSeq="1 INVITE"))
    assert check_request(req("ACK", Require="foo")) is None  # Require does not apply to ACK


def test_make_response_copies_per_8_2_6() -> None:
    r = req(Record_Route="<sip:p1;lr>")
    r.headers.add("Via", "SIP/2.0/UDP second;branch=z9hG4bKy")
    ok = make_response(r, 200, to_tag="mine", headers=[("Contact", "<sip:me@h>")], body=b"x")
    assert ok.reason == "OK"
    assert ok.headers.get_all("Via") == r.headers.get_all("Via")
    assert ok.to_tag == "mine"
    assert ok.headers.get("Record-Route") == "<sip:p1;lr>"
    assert ok.headers.get("Contact") == "<sip:me@h>"
    assert ok.headers.get("Max-Forwards") is None
    assert parse_message(ok.to_bytes()) == ok
    trying = make_response(r, 100)
    assert trying.to_tag is None and trying.headers.get("Record-Route") is None
    final = make_response(r, 486)
    assert final.to_tag and final.headers.get("Record-Route") is None
    assert make_response(r, 299, "Custom").reason == "Custom"
    assert reason_phrase(299) == "Unknown"


def test_make_response_keeps_an_existing_to_tag_and_bad_to() -> None:
    assert make_response(req(To="<sip:c@h>;tag=old"), 200, to_tag="new").to_tag == "old"
    assert make_response(req(To="<broken"), 400).headers.get("To") == "<broken"


def test_every_contact_is_checked() -> None:
    reply = check_request(req(Contact="<sip:a@h>, <sip:b@h"))
    assert reply is not None and reply.status == 400
