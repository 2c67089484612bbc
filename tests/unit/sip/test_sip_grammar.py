"""Header value grammar: URIs, name-addr, Via, CSeq, parameters, lists."""

from __future__ import annotations

import pytest
from sipfleet.node.sip import (
    NameAddr,
    SipParseError,
    SipUri,
    Via,
    parse_cseq,
    parse_params,
    quote,
    split_commas,
    unescape,
    unquote,
)
from sipfleet.node.sip.uri import parse_hostport


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("sip:example.com", ("sip", None, None, "example.com", None, {}, "")),
        ("SIP:Alice@Example.COM:5070", ("sip", "Alice", None, "example.com", 5070, {}, "")),
        (
            "sips:a:pw@h;transport=tcp;lr",
            ("sips", "a", "pw", "h", None, {"transport": "tcp", "lr": None}, ""),
        ),
        (
            "sip:[2001:db8::1]:5060;maddr=x",
            ("sip", None, None, "[2001:db8::1]", 5060, {"maddr": "x"}, ""),
        ),
        ("sip:b@[::1]", ("sip", "b", None, "[::1]", None, {}, "")),
        ("sip:u@h?subject=hi&x=1", ("sip", "u", None, "h", None, {}, "subject=hi&x=1")),
        (
            "tel:+1-201-555-0123;phone-context=x",
            ("tel", "+1-201-555-0123", None, "", None, {"phone-context": "x"}, ""),
        ),
    ],
)
def test_uri_parse(text: str, fields: tuple[object, ...]) -> None:
    uri = SipUri.parse(text)
    assert (
        uri.scheme,
        uri.user,
        uri.password,
        uri.host,
        uri.port,
        uri.params,
        uri.headers,
    ) == fields
    assert SipUri.parse(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("example.com", 400),
        (":x", 400),
        ("1sip:x", 400),
        ("http://example.com", 416),
        ("tel:", 400),
        ("sip:@h", 400),
        ("sip:a b@h", 400),
        ("sip:a%zz@h", 400),
        ("sip:a%4@h", 400),
        ("sip:", 400),
        ("sip:h_x", 400),
        ("sip:[::1", 400),
        ("sip:[zz::1]", 400),
        ("sip:[::1]x", 400),
        ("sip:h:99999", 400),
        ("sip:h:5x", 400),
        ("sip:h;", 400),
        ("sip:h;=x", 400),
    ],
)
def test_uri_rejects(text: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.status == status


def test_uri_equality_per_rfc3261() -> None:
    same = SipUri.parse("sip:%61lice@EXAMPLE.com;transport=TCP")
    assert same.same_as(SipUri.parse("sip:alice@example.com;transport=tcp;other=1"))
    assert not same.same_as(SipUri.parse("sip:alice@example.com"))
    assert not same.same_as(SipUri.parse("sip:bob@example.com;transport=tcp"))
    assert not same.same_as(SipUri.parse("sips:alice@example.com;transport=tcp"))
    assert SipUri.parse("sip:h").same_as(SipUri.parse("sip:H"))


def test_unescape() -> None:
    assert unescape("a%20b%2525") == "a b%25"
    assert unescape("plain") == "plain"
    assert unescape("%e5%a4%a7") == "大"


def test_hostport() -> None:
    assert parse_hostport("h:1") == ("h", 1)
    assert parse_hostport("[::1]") == ("[::1]", None)


@pytest.mark.parametrize(
    ("text", "display", "uri", "params"),
    [
        ("<sip:a@b>", None, "sip:a@b", {}),
        ('"A \\"B\\"" <sip:a@b>;tag=1', 'A "B"', "sip:a@b", {"tag": "1"}),
        ("Alice Smith <sip:a@b> ; tag = x", "Alice Smith", "sip:a@b", {"tag": "x"}),
        ("sip:a@b;tag=2", None, "sip:a@b", {"tag": "2"}),
        ("tel:+123 ;tag=2", None, "tel:+123", {"tag": "2"}),
        ("<urn:x:y>", None, "urn:x:y", {}),
        ('"" <sip:a@b>', "", "sip:a@b", {}),
    ],
)
def test_name_addr(text: str, display: str | None, uri: str, params: dict[str, str]) -> None:
    addr = NameAddr.parse(text)
    assert (addr.display, addr.uri, addr.params) == (display, uri, params)
    assert NameAddr.parse(str(addr)) == addr


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        '"x" sip:a@b',
        "<sip:a@b",
        "< sip:a@b>",
        "Bell, Alexander <sip:a@b>",
        "sip:a@b?x=1",
        "nocolon",
        "<sip:a@b> junk",
        '"trailing backslash\\',
    ],
)
def test_name_addr_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_name_addr_tag_and_sip_uri() -> None:
    addr = NameAddr.parse("<sip:u@h:5080>;tag=t")
    assert addr.tag == "t" and addr.sip_uri.port == 5080
    assert str(NameAddr("sip:x@y", "Name")) == '"Name" <sip:x@y>'


@pytest.mark.parametrize(
    ("text", "transport", "host", "port", "params"),
    [
        (
            "SIP/2.0/UDP h:5060;branch=z9hG4bKx;rport",
            "UDP",
            "h",
            5060,
            {"branch": "z9hG4bKx", "rport": None},
        ),
        ("SIP / 2.0 / tcp [::1]", "TCP", "[::1]", None, {}),
        ('SIP/2.0/TLS h;x="a;b"', "TLS", "h", None, {"x": '"a;b"'}),
    ],
)
def test_via(
    text: str, transport: str, host: str, port: int | None, params: dict[str, str]
) -> None:
    via = Via.parse(text)
    assert (via.transport, via.host, via.port, via.params) == (transport, host, port, params)
    assert Via.parse(str(via)) == via
    assert via.sent_by == (host if port is None else f"{host}:{port}")


@pytest.mark.parametrize("text", ["SIP/2.0 h", "SIP/2.0/UDP", "SIP/2.0/U;DP h", "SIP/2.0/UDP h;;"])
def test_via_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1 INVITE", (1, "INVITE")),
        ("  2147483647   BYE ", (2147483647, "BYE")),
        ("2147483648 BYE", None),
        ("12345678901 BYE", None),
        ("x BYE", None),
        ("1", None),
        ("1 B<E", None),
        ("\u0661 BYE", None),  # a non-ASCII digit
    ],
)
def test_cseq(text: str, ok: tuple[int, str] | None) -> None:
    if ok is None:
        with pytest.raises(SipParseError):
            parse_cseq(text)
    else:
        assert parse_cseq(text) == ok


def test_params_and_lists() -> None:
    assert parse_params("") == {}
    assert parse_params(' ;A=1; b ;c="x;y"') == {"a": "1", "b": None, "c": '"x;y"'}
    with pytest.raises(SipParseError):
        parse_params("x;a=1")
    assert split_commas('<sip:a,b>;x="c,d", e ,, f') == ['<sip:a,b>;x="c,d"', "e", "f"]
    assert split_commas('"a\\",b", c') == ['"a\\",b"', "c"]
    with pytest.raises(SipParseError):
        split_commas('"open, x')
    with pytest.raises(SipParseError):
        split_commas("<open, x")


def test_quote_unquote() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert unquote(quote('a"b\\c')) == 'a"b\\c'
    assert unquote('"plain"') == "plain"
    assert unquote("bare") == "bare"
