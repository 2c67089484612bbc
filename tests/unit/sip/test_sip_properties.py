"""Property tests: the parser only ever raises SipParseError, messages
round-trip, and hostile inputs cost linear time and bounded memory."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from sipfleet.node.sip import (
    Headers,
    Limits,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    StreamFramer,
    Via,
    parse_message,
    split_commas,
)

SEED = (
    b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
    b'From: "A" <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n'
    b"Content-Length: 2\r\n\r\nhi"
)


def _touch(message: SipRequest | SipResponse) -> None:
    """Run every accessor; each may fail only with SipParseError."""
    for accessor in ("call_id", "cseq", "via", "vias", "from_", "to", "contact", "max_forwards"):
        with contextlib.suppress(SipParseError):
            getattr(message, accessor)
    if isinstance(message, SipRequest):
        with contextlib.suppress(SipParseError):
            SipUri.parse(message.uri)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        _touch(parse_message(data))


@settings(max_examples=300)
@given(st.lists(st.sampled_from(SEED.split(b"\r\n")) | st.binary(max_size=40), max_size=12))
def test_mutated_messages_raise_only_sip_parse_error(lines: list[bytes]) -> None:
    data = b"\r\n".join(lines)
    with contextlib.suppress(SipParseError):
        _touch(parse_message(data))
    try:
        for message in StreamFramer().feed(data + b"\r\n\r\n"):
            _touch(message)
    except SipParseError:
        pass


TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
VALUE = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_characters="\x7f"),
    max_size=30,
).map(str.strip)
HEADER_NAME = TOKEN.filter(lambda n: n.lower() not in ("content-length", "l"))


@st.composite
def messages(draw: st.DrawFn) -> SipRequest | SipResponse:
    headers = Headers(draw(st.lists(st.tuples(HEADER_NAME, VALUE), max_size=8)))
    body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        uri = f"sip:{draw(TOKEN)}@{draw(st.sampled_from(['h.example.com', '127.0.0.1', '[::1]']))}"
        return SipRequest(draw(TOKEN), uri, headers, body)
    reason = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF), max_size=20))
    return SipResponse(draw(st.integers(100, 699)), reason.strip(), headers, body)


@settings(max_examples=300)
@given(messages())
def test_serialise_then_parse_round_trips(message: SipRequest | SipResponse) -> None:
    parsed = parse_message(message.to_bytes())
    assert parsed == message
    (framed,) = StreamFramer().feed(message.to_bytes())
    assert framed == message


@given(st.lists(st.sampled_from(['"', "\\", "<", ">", ",", ";", "a", " "]), max_size=60))
def test_list_splitting_and_addresses_raise_only_sip_parse_error(chars: list[str]) -> None:
    text = "".join(chars)
    for parse in (split_commas, NameAddr.parse, Via.parse, SipUri.parse):
        with contextlib.suppress(SipParseError):
            parse(text)


# -- hostile inputs: linear time, bounded memory -----------------------------------------

ROOMY = Limits(max_head_bytes=1 << 20, max_headers=1 << 20, max_line=1 << 20, max_uri=1 << 20)
HEAD = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"


def hostile(kind: str, size: int) -> bytes:
    """About `size` bytes of one adversarial shape."""
    shapes: dict[str, Callable[[int], str]] = {
        "many headers": lambda n: "X: a\r\n" * (n // 6),
        "many commas": lambda n: "Contact: " + "<sip:a@b>," * (n // 10) + "\r\n",
        "deep quoting": lambda n: 'From: "' + '\\"' * (n // 2) + '" <sip:a@b>\r\n',
        "long line": lambda n: "Subject: " + "a" * n + "\r\n",
        "many folds": lambda n: "Subject: a\r\n" + " b\r\n" * (n // 4),
        "many params": lambda n: "To: <sip:a@b>" + ";p" * (n // 2) + "\r\n",
        "many vias": lambda n: "Via: " + "SIP/2.0/UDP h;branch=z9hG4bKx," * (n // 30) + "\r\n",
        "open angle": lambda n: "Contact: " + "<" * n + "\r\n",
    }
    return (HEAD + shapes[kind](size) + "\r\n").encode()


def _work(data: bytes) -> None:
    try:
        message = parse_message(data, ROOMY)
    except SipParseError:
        return
    _touch(message)
    for name in ("Contact", "Via", "To", "From", "Subject"):
        try:
            values = message.headers.get_list(name)
            for value in values[:1]:
                NameAddr.parse(value)
        except SipParseError:
            pass


def _best_time(data: bytes, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        _work(data)
        best = min(best, time.process_time() - start)
    return best


KINDS = [
    "many headers",
    "many commas",
    "deep quoting",
    "long line",
    "many folds",
    "many params",
    "many vias",
    "open angle",
]


def test_hostile_inputs_scale_linearly() -> None:
    # 4x the input may cost about 4x the time; quadratic work would be 16x.
    # The bound is generous because the machine is shared.
    for kind in KINDS:
        small, large = _best_time(hostile(kind, 16384)), _best_time(hostile(kind, 65536))
        assert large < 9 * max(small, 1e-4), f"{kind}: {small:.5f}s -> {large:.5f}s"


def test_hostile_inputs_use_bounded_memory() -> None:
    for kind in KINDS:
        data = hostile(kind, 65536)
        tracemalloc.start()
        _work(data)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 64 * len(data), f"{kind}: peak {peak} bytes for {len(data)} input"


def test_default_limits_reject_oversized_input_cheaply() -> None:
    for kind in ("many headers", "long line", "many folds"):
        try:
            parse_message(hostile(kind, 65536))
        except SipParseError as exc:
            assert exc.status in (400, 413)
        else:
            raise AssertionError(f"{kind}: accepted under default limits")


HOST = st.sampled_from(["example.com", "h-1.example.org", "127.0.0.1", "[2001:db8::1]", "[::1]"])
PARAMS = st.dictionaries(TOKEN.map(str.lower), st.none() | TOKEN, max_size=3)
USER = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/", min_size=1, max_size=12)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    return SipUri(
        draw(st.sampled_from(["sip", "sips"])),
        draw(HOST),
        draw(st.none() | USER),
        None,
        draw(st.none() | st.integers(0, 65535)),
        draw(PARAMS),
    )


@settings(max_examples=200)
@given(sip_uris(), st.none() | st.text(max_size=15), PARAMS, st.sampled_from(["UDP", "TCP", "TLS"]))
def test_structured_values_round_trip(
    uri: SipUri, display: str | None, params: dict[str, str | None], transport: str
) -> None:
    assert SipUri.parse(str(uri)) == uri
    addr = NameAddr(str(uri), display, params)
    assert NameAddr.parse(str(addr)) == addr
    via = Via(transport, uri.host, uri.port, params)
    assert Via.parse(str(via)) == via


@settings(max_examples=100)
@given(st.lists(messages(), min_size=1, max_size=4), st.lists(st.integers(1, 200), max_size=30))
def test_framing_does_not_depend_on_chunking(
    batch: list[SipRequest | SipResponse], cuts: list[int]
) -> None:
    stream = b"\r\n".join(m.to_bytes() for m in batch)  # CRLF keepalives between
    framer = StreamFramer()
    out: list[SipRequest | SipResponse] = []
    position = 0
    for size in cuts:
        out += framer.feed(stream[position : position + size])
        position += size
    out += framer.feed(stream[position:])
    assert out == batch and framer.buffered == 0
