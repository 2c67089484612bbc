"""Parser, stream framer and message model: table-driven cases."""

from __future__ import annotations

import pytest
from sipfleet.node.sip import (
    Headers,
    Limits,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    parse_message,
    to_bytes,
)

BASE = (
    "MESSAGE sip:conf@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKabc\r\n"
    "From: <sip:a@example.com>;tag=1\r\n"
    "To: <sip:conf@example.com>\r\n"
    "Call-ID: c1\r\n"
    "CSeq: 1 MESSAGE\r\n"
    "Max-Forwards: 70\r\n"
)


def msg(extra: str = "", body: str = "", length: int | None = None) -> bytes:
    n = len(body.encode()) if length is None else length
    return f"{BASE}{extra}Content-Length: {n}\r\n\r\n{body}".encode()


def test_parses_a_request() -> None:
    m = parse_message(msg(body="hello"))
    assert isinstance(m, SipRequest)
    assert (m.method, m.uri, m.version) == ("MESSAGE", "sip:conf@example.com", "SIP/2.0")
    assert m.body == b"hello"
    assert m.call_id == "c1" and m.cseq == (1, "MESSAGE") and m.from_tag == "1"
    assert m.to_tag is None and m.max_forwards == 70


def test_parses_a_response() -> None:
    m = parse_message(b"SIP/2.0 486 Busy Here\r\nCall-ID: x\r\n\r\n")
    assert isinstance(m, SipResponse)
    assert (m.status, m.reason, m.body) == (486, "Busy Here", b"")


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "no blank line"),
        (b"\r\n\r\n", 400, "no blank line"),
        (b"HELLO\r\n\r\n", 400, "bad request line"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia x\r\n\r\n", 400, "bad header line"),
        (b"INVITE sip:a@b SIP/2.0\r\n: x\r\n\r\n", 400, "bad header line"),
        (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", 400, "bad header line"),
        (b"INVITE sip:a@b SIP/2.0\r\n folded\r\n\r\n", 400, "continuation"),
        (b"INV<ITE sip:a@b SIP/2.0\r\n\r\n", 400, "bad method"),
        (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", 400, "bad version"),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", 505, "unsupported version"),
        (b"SIP/3.0 200 OK\r\n\r\n", 505, "unsupported version"),
        (b"SIP/2.0 20 OK\r\n\r\n", 400, "bad status line"),
        (b"SIP/2.0 099 OK\r\n\r\n", 400, "bad status line"),
        (b"SIP/2.0 2x0 OK\r\n\r\n", 400, "bad status line"),
        (msg(length=10), 400, "Content-Length says 10"),
        (msg("Content-Length: 4\r\n", "abcd", length=3), 400, "conflicting"),
        (msg(length=-1), 400, "bad Content-Length"),
        (f"{BASE}Content-Length: 12345678901\r\n\r\n".encode(), 400, "out of range"),
    ],
)
def test_rejects(data: bytes, status: int, words: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == status
    assert words in info.value.reason


def test_body_longer_than_content_length_is_truncated() -> None:
    assert parse_message(msg(body="abcdef", length=3)).body == b"abc"


def test_missing_content_length_takes_the_rest_of_the_datagram() -> None:
    m = parse_message(BASE.encode() + b"\r\nbody")
    assert m.body == b"body"


def test_leading_crlf_is_ignored() -> None:
    assert isinstance(parse_message(b"\r\n\r\n" + msg()), SipRequest)


def test_folding_compact_forms_and_case() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"i: cid\r\nSUBJECT: one\r\n\t two\r\n  three\r\nl: 0\r\n\r\n"
    )
    m = parse_message(data)
    assert m.headers.get("via") == "SIP/2.0/UDP h;branch=z9hG4bK1"
    assert m.headers.get("Call-ID") == "cid"
    assert m.headers.get("subject") == "one two three"
    assert [name for name, _ in m.headers] == ["Via", "Call-ID", "Subject"]


@pytest.mark.parametrize(
    ("limits", "data", "status"),
    [
        (Limits(max_headers=3), msg(), 400),
        (Limits(max_line=20), msg(), 400),
        (Limits(max_uri=10), msg(), 414),
        (Limits(max_head_bytes=50), msg(), 413),
    ],
)
def test_limits(limits: Limits, data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data, limits)
    assert info.value.status == status


def test_error_response_answers_a_bad_start_line() -> None:
    bad = msg().replace(b"MESSAGE sip:conf@example.com SIP/2.0", b"MESSAGE  sip:x SIP/2.0")
    with pytest.raises(SipParseError) as info:
        parse_message(bad)
    reply = error_response(info.value)
    assert reply is not None and reply.status == 400
    assert reply.headers.get("Call-ID") == "c1" and reply.to_tag is not None
    assert "bad request line" in (reply.headers.get("Warning") or "")


def test_error_response_needs_routing_headers() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(b"INVITE  x SIP/2.0\r\nCall-ID: 1\r\n\r\n")
    assert error_response(info.value) is None


# -- serialisation ----------------------------------------------------------------


def test_to_bytes_rewrites_content_length() -> None:
    m = parse_message(msg(body="abc"))
    m.body = b"longer body"
    wire = to_bytes(m)
    assert wire.endswith(b"Content-Length: 11\r\n\r\nlonger body")
    assert wire.count(b"Content-Length") == 1
    assert "Content-Length" not in m.headers  # framing, consumed by the parser
    assert parse_message(wire) == m


def test_response_round_trip() -> None:
    r = SipResponse(200, "OK", Headers([("Call-ID", "x"), ("CSeq", "1 BYE")]))
    assert (
        r.to_bytes() == b"SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    assert parse_message(r.to_bytes()) == r


def test_accessor_errors_name_the_field() -> None:
    m = SipRequest("BYE", "sip:a@b")
    for accessor in ("call_id", "cseq", "via", "from_", "to"):
        with pytest.raises(SipParseError):
            getattr(m, accessor)
    assert m.max_forwards is None and m.contact is None and m.vias == []
    m.headers.add("Max-Forwards", "256")
    with pytest.raises(SipParseError, match="0-255"):
        _ = m.max_forwards
    m.headers.set("Contact", "*")
    assert m.contact is None


# -- headers -------------------------------------------------------------------------


def test_headers_api() -> None:
    h = Headers([("v", "a"), ("To", "t"), ("VIA", "b, c")])
    assert h.get("Via") == "a" and h.get("missing") is None and h.get("x", "d") == "d"
    assert h.get_all("via") == ["a", "b, c"]
    assert h.get_list("Via") == ["a", "b", "c"]
    assert "t" in h and "TO" in h and "From" not in h and 3 not in h
    h.prepend("Via", "z")
    assert h.get_all("Via") == ["z", "a", "b, c"]
    h.set("via", "only")
    assert list(h) == [("Via", "only"), ("To", "t")]
    h.set("X-New", "1")
    assert h.remove("x-new") == 1 and h.remove("x-new") == 0
    copy = h.copy()
    copy.add("From", "f")
    assert len(h) == 2 and len(copy) == 3 and copy != h
    assert h == Headers([("VIA", "only"), ("to", "t")])
    assert h.__eq__(object()) is NotImplemented
    assert "Via" in repr(h)


# -- stream framing --------------------------------------------------------------------


def test_framer_byte_by_byte_with_keepalives() -> None:
    data = b"\r\n\r\n" + msg(body="one") + b"\r\n" + msg(body="two!")
    framer = StreamFramer()
    out = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert [m.body for m in out] == [b"one", b"two!"]
    assert framer.buffered == 0


def test_framer_many_messages_in_one_chunk() -> None:
    framer = StreamFramer()
    out = framer.feed(msg(body="a") * 5 + msg(body="partial")[:-3])
    assert [m.body for m in out] == [b"a"] * 5
    assert [m.body for m in framer.feed(b"ial")] == [b"partial"]


def test_framer_missing_content_length_means_empty_body() -> None:
    out = StreamFramer().feed(BASE.encode() + b"\r\n")
    assert len(out) == 1 and out[0].body == b""


def test_framer_bounds_the_header_section() -> None:
    framer = StreamFramer(Limits(max_head_bytes=100))
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError) as info:
        framer.feed(b"X: " + b"y" * 200)
    assert info.value.status == 413


def test_framer_bounds_the_body() -> None:
    with pytest.raises(SipParseError) as info:
        StreamFramer(Limits(max_body_bytes=10)).feed(msg(length=11))
    assert info.value.status == 413


def test_error_response_echoes_an_unparseable_to() -> None:
    bad = msg().replace(b"To: <sip:conf@example.com>", b"To: <broken")
    bad = bad.replace(b"MESSAGE sip:conf@example.com SIP/2.0", b"MESSAGE  x SIP/2.0")
    with pytest.raises(SipParseError) as info:
        parse_message(bad)
    reply = error_response(info.value)
    assert reply is not None and reply.headers.get("To") == "<broken"


def test_header_name_memo_is_bounded() -> None:
    from sipfleet.node.sip import message

    Headers((f"X-Unique-{i}", "v") for i in range(5000))
    assert len(message._SPELLINGS) <= 4096
