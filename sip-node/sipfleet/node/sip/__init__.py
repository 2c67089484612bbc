"""Sans-I/O SIP protocol core (RFC 3261 and friends), in the style of h11.

Bytes in -> messages/events out; events in -> bytes out. Nothing here opens a
socket, touches asyncio or reads the clock: every time-dependent call takes
`now: float` (seconds, any monotonic origin). Bad input raises only
`SipParseError` (with `.status` to answer a request with, and `.reason`).

Messages (message.py)
    Headers(items=())            ordered, case-insensitive, multi-valued; compact
                                 names (i m e l c f s k t v o u r b) become canonical.
        .get(name, default=None) -> str | None       first value
        .get_all(name) -> list[str]                  every field value
        .get_list(name) -> list[str]                 comma-split elements (Via, Route, ...)
        .add(name, value) / .prepend(name, value) / .set(name, value) / .remove(name) -> int
        .copy(); iteration yields (name, value); len(); `name in headers`
    SipRequest(method, uri, headers=Headers(), body=b"", version="SIP/2.0")
    SipResponse(status, reason="", headers=Headers(), body=b"", version="SIP/2.0")
        .to_bytes() -> bytes     Content-Length is always written from len(body)
        accessors (parse on each call; SipParseError if missing/bad):
        .call_id -> str, .cseq -> (int, method), .via -> Via (top), .vias,
        .from_ / .to -> NameAddr, .from_tag / .to_tag -> str | None,
        .contact -> NameAddr | None, .max_forwards -> int | None
    to_bytes(message) -> bytes;  SipMessage = SipRequest | SipResponse

Header values (uri.py, fields.py, scan.py)
    SipUri.parse(text) -> SipUri(scheme, host, user, password, port, params, headers)
        sip/sips/tel; other schemes raise SipParseError(416); str() serialises;
        .same_as(other) compares per RFC 3261 19.1.4 (roughly).
    NameAddr.parse(text) -> NameAddr(uri: str, display, params); .tag; .sip_uri; str()
    Via.parse(text) -> Via(transport, host, port, params, protocol); .branch; .sent_by; str()
    parse_params(";a=b;c") -> dict;  split_commas(text) -> list[str];
    quote(text) / unquote(text);  unescape(text) (%XX)

Parsing (parser.py)
    parse_message(data, limits=DEFAULT_LIMITS) -> SipRequest | SipResponse
        one datagram; body shorter than Content-Length -> 400, longer -> truncated.
    StreamFramer(limits).feed(data) -> list[SipMessage]    TCP framing by
        Content-Length; CRLF keepalives skipped; over-limit head/body -> SipParseError(413).
    Limits(max_head_bytes, max_headers, max_line, max_uri, max_body_bytes)
"""

from .errors import SipParseError
from .fields import NameAddr, Via, parse_cseq
from .message import Headers, SipMessage, SipRequest, SipResponse, canonical_name, to_bytes
from .parser import DEFAULT_LIMITS, Limits, StreamFramer, parse_message
from .scan import parse_params, quote, split_commas, unquote
from .uri import SipUri, unescape

__all__ = [
    "DEFAULT_LIMITS",
    "Headers",
    "Limits",
    "NameAddr",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamFramer",
    "Via",
    "canonical_name",
    "parse_cseq",
    "parse_message",
    "parse_params",
    "quote",
    "split_commas",
    "to_bytes",
    "unescape",
    "unquote",
]
