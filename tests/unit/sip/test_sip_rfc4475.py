"""Every RFC 4475 torture message, with the behaviour its section gives.

Valid messages (3.1.1) must parse and their key fields are checked; invalid
ones (3.1.2) are rejected with the status the RFC names (or dropped, for
responses); transaction- and application-layer ones (3.2-3.4) get the
answer the RFC describes from parse + check_request (+ the transaction
layer where the RFC talks about it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sipfleet.node.sip import (
    NameAddr,
    Policy,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    TransactionLayer,
    check_request,
    error_response,
    parse_message,
    unescape,
)

# The repository's copy of the torture messages (tests/data/rfc4475/README.md).
DATA = Path(__file__).resolve().parents[2] / "data" / "rfc4475"
# The server's policy: what a sipfleet node implements.
POLICY = Policy(
    accepted_types=frozenset({"application/sdp", "text/plain", "multipart/mixed", "message/cpim"})
)


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def request(name: str) -> SipRequest:
    message = parse_message(load(name))
    assert isinstance(message, SipRequest)
    return message


def response(name: str) -> SipResponse:
    message = parse_message(load(name))
    assert isinstance(message, SipResponse)
    return message


def answer(name: str) -> int | None:
    """The status a server sends for this datagram (None: process it)."""
    try:
        message = parse_message(load(name))
    except SipParseError as exc:
        reply = error_response(exc)
        assert reply is not None, f"{name}: a rejected request must still be answerable"
        assert reply.headers.get("Call-ID") is not None
        return reply.status
    assert isinstance(message, SipRequest)
    reply = check_request(message, POLICY)
    return None if reply is None else reply.status


# name -> status the server answers with (None: accepted for processing).
ANSWERS: dict[str, int | None] = {
    # 3.1.1 valid requests (REGISTER/unknown methods: we are no registrar)
    "wsinv": None,
    "intmeth": 501,
    "esc01": None,
    "escnull": 405,
    "esc02": 501,
    "lwsdisp": None,
    "longreq": None,
    "dblreq": 405,
    "semiuri": None,
    "transports": None,
    "mpart01": None,
    # 3.1.2 invalid
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": None,  # Date is not used here, so it is ignored
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 501,  # the RFC prefers 501 over 400
    # 3.2 transaction layer
    "badbranch": 400,
    # 3.3 application layer
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": 405,  # valid; a non-registrar rejects REGISTER with 405
    "bext01": 420,
    "invut": 415,
    "regaut01": 405,
    "multi01": 400,
    "mcl01": 400,
    "zeromf": None,  # OPTIONS with Max-Forwards 0 is answered normally
    "cparam01": 405,
    "cparam02": 405,
    "regescrt": 405,
    "sdp01": 406,
    # 3.4 backwards compatibility
    "inv2543": None,
}
RESPONSES = {"unreason", "noreason", "bcast", "scalarlg", "bigcode"}


def test_table_covers_all_49_files() -> None:
    names = {path.stem for path in DATA.glob("*.dat")}
    assert len(names) == 49
    assert names == set(ANSWERS) | RESPONSES


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_request_answer(name: str) -> None:
    assert answer(name) == ANSWERS[name]


# -- 3.1.1 valid messages: key fields -------------------------------------------


def test_wsinv_short_tortuous_invite() -> None:
    m = request("wsinv")
    assert m.method == "INVITE"
    assert m.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert m.to.uri == "sip:vivekg@chair-dnrc.example.com"
    assert m.to_tag == "1918181833n"
    assert m.from_.display == 'J Rosenberg \\"'
    assert m.from_tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.cseq == (9, "INVITE")
    vias = m.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = m.contact
    assert contact is not None
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.headers.get_list("Route") == [
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    ]
    assert len(m.body) == 150


def test_intmeth_wide_range_of_valid_characters() -> None:
    m = request("intmeth")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq == (139122385, m.method)
    uri = SipUri.parse(m.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_valid_percent_escaping() -> None:
    m = request("esc01")
    uri = SipUri.parse(m.uri)
    assert unescape(uri.user or "") == "sips:user@example.com"
    assert uri.host == "example.net"
    assert unescape(m.to.sip_uri.user or "") == "user"
    assert unescape(m.from_.sip_uri.user or "") == "I have spaces"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact form i
    assert m.headers.get("Content-Type") == "application/sdp"  # compact form c
    contact = m.contact
    assert contact is not None
    assert unescape(contact.sip_uri.user or "") == "caller"
    params = contact.sip_uri.params
    assert {unescape(k): None if v is None else unescape(v) for k, v in params.items()} == {
        "lr": None,
        "name": "value%41",
    }


def test_escnull_escaped_nulls() -> None:
    m = request("escnull")
    assert unescape(m.to.sip_uri.user or "") == "null-\x00-null"
    contacts = [NameAddr.parse(v).sip_uri for v in m.headers.get_list("Contact")]
    assert [unescape(c.user or "") for c in contacts] == ["\x00", "\x00\x00"]


def test_esc02_percent_that_is_not_an_escape() -> None:
    m = request("esc02")
    assert m.method == "RE%47IST%45R"  # not REGISTER
    assert m.cseq == (29344, "RE%47IST%45R")
    assert m.to.display == "%Z%45"
    assert m.headers.get_all("Contact") == [
        "<sip:alias1@host1.example.com>",
        "<sip:alias3@host3.example.com>",
    ]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.via.branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_no_space_before_laquot() -> None:
    m = request("lwsdisp")
    assert m.from_.display == "caller"
    assert m.from_.uri == "sip:caller@example.com"
    assert m.from_tag == "323"


def test_longreq_long_values() -> None:
    m = request("longreq")
    assert len(m.to.display or "") == 103
    assert m.to.sip_uri.port == 6000
    assert len(m.vias) == 34
    assert all(v.transport == "TCP" for v in m.vias)
    assert m.from_tag is not None and len(m.from_tag) > 100
    assert len(m.call_id) > 100
    assert len(m.body) == 150


def test_dblreq_extra_octets_are_ignored() -> None:
    m = request("dblreq")
    assert m.method == "REGISTER"
    assert m.body == b""  # the INVITE after Content-Length is dropped
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_semiuri_semicolons_in_user_part() -> None:
    m = request("semiuri")
    uri = SipUri.parse(m.uri)
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com"
    assert uri.params == {}
    assert len(m.headers.get_list("Accept")) == 6


def test_transports_varied_and_unknown() -> None:
    m = request("transports")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_multipart_binary_body() -> None:
    m = request("mpart01")
    assert len(m.body) == 553
    assert m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert (m.headers.get("Content-Type") or "").startswith("multipart/mixed")


def test_unreason_unusual_reason_phrase() -> None:
    m = response("unreason")
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(m.body) == 154


def test_noreason_empty_reason_phrase() -> None:
    m = response("noreason")
    assert (m.status, m.reason) == (100, "")
    assert m.to_tag == "902jndnke3"


# -- 3.1.2 invalid: details beyond the status --------------------------------------


def test_bigcode_overlarge_response_code_is_dropped() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load("bigcode"))
    assert error_response(info.value) is None  # a response is never answered


def test_scalarlg_response_with_overlarge_values_is_dropped() -> None:
    layer = TransactionLayer()
    m = response("scalarlg")
    assert layer.receive(m, ("192.0.2.129", 5060), "TCP", 0.0) == []
    assert layer.stats.dropped == 1


def test_bext01_lists_required_extensions_as_unsupported() -> None:
    reply = check_request(request("bext01"), POLICY)
    assert reply is not None
    assert reply.headers.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"


def test_invut_names_the_accepted_types() -> None:
    reply = check_request(request("invut"), POLICY)
    assert reply is not None
    assert "application/sdp" in (reply.headers.get("Accept") or "")


def test_unksm2_unknown_schemes_in_headers_parse() -> None:
    m = request("unksm2")
    assert m.to.uri == "isbn:2983792873"
    assert m.from_.uri == "http://www.example.com"
    contact = m.contact
    assert contact is not None and contact.uri == "name:John_Smith"


def test_regescrt_contact_with_escaped_header() -> None:
    contact = request("regescrt").contact
    assert contact is not None
    assert contact.sip_uri.headers == "Route=%3Csip:sip.example.com%3E"


def test_cparam_contact_parameters() -> None:
    one = request("cparam01").contact
    two = request("cparam02").contact
    assert one is not None and two is not None
    assert one.params == {"unknownparam": None}  # addr-spec: header parameter
    assert two.params == {} and two.sip_uri.params == {"unknownparam": None}


def test_bcast_response_is_discarded() -> None:
    layer = TransactionLayer()
    assert layer.receive(response("bcast"), ("192.0.2.198", 5060), "UDP", 0.0) == []
    assert layer.stats.stray_responses == 1


def test_inv2543_accepted_with_rfc2543_transaction_matching() -> None:
    m = request("inv2543")
    assert m.via.branch is None and m.from_tag is None and m.max_forwards is None
    layer = TransactionLayer()
    events = layer.receive(m, ("192.0.2.5", 5060), "UDP", 0.0)
    assert len(events) == 1
    # The retransmission (same bytes) is matched and absorbed.
    assert layer.receive(request("inv2543"), ("192.0.2.5", 5060), "UDP", 0.1) == []
    assert layer.stats.absorbed == 1
