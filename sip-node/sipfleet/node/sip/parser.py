"""Bytes -> messages: `parse_message` for datagrams, `StreamFramer` for TCP.

Work is linear in the input: the head is split once on CRLF, folded lines
are joined in the same pass, header values stay raw strings until used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SipParseError
from .fields import is_token
from .message import Headers, SipMessage, SipRequest, SipResponse, field_name


@dataclass(frozen=True)
class Limits:
    """Bounds that keep hostile input cheap."""

    max_head_bytes: int = 65536
    max_headers: int = 256
    max_line: int = 8192
    max_uri: int = 4096
    max_body_bytes: int = 1 << 20


DEFAULT_LIMITS = Limits()


def _parse_start(line: str, limits: Limits) -> SipMessage:
    if line.startswith("SIP/"):
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] not in "123456":
            raise SipParseError(f"bad status line {line[:80]!r}")
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported version {version[:20]!r}", 505)
        return SipResponse(int(code), reason.strip())
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(f"bad request line {line[:80]!r} (want 'METHOD URI SIP/2.0')")
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError(f"bad method {method[:40]!r}")
    if len(uri) > limits.max_uri:
        raise SipParseError(f"Request-URI longer than {limits.max_uri} bytes", 414)
    if version.upper() != "SIP/2.0":
        if not version.upper().startswith("SIP/"):
            raise SipParseError(f"bad version {version[:20]!r}")
        raise SipParseError(f"unsupported version {version[:20]!r}", 505)
    return SipRequest(method, uri)


def parse_head(head: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[SipMessage, int | None]:
    """Parse a start line and header block (without the blank line) into a
    message with an empty body, plus its Content-Length (None if absent).

    Content-Length is framing, not content: it is consumed here and
    `to_bytes` writes it from the body.
    """
    if len(head) > limits.max_head_bytes:
        raise SipParseError(f"header section larger than {limits.max_head_bytes} bytes", 413)
    lines = _unfolded_lines(head.decode("utf-8", "surrogateescape"), limits)
    try:
        message = _parse_start(lines[0], limits)
    except SipParseError as exc:
        # Still read the header fields, so the caller can answer the request.
        exc.headers, _ = _parse_fields(lines, limits)
        exc.is_request = not lines[0].startswith("SIP/")
        raise
    message.headers, lengths = _parse_fields(lines, limits)
    try:
        return message, _content_length(lengths)
    except SipParseError as exc:
        exc.headers = message.headers
        exc.is_request = isinstance(message, SipRequest)
        raise


# A fold (CRLF then whitespace) becomes one space. The pattern starts with a
# fixed CRLF, so each match attempt is O(1) unless it succeeds: linear overall.
_FOLD = re.compile(r"\r\n[ \t]+")


def _unfolded_lines(text: str, limits: Limits) -> list[str]:
    if "\r\n " in text or "\r\n\t" in text:
        first = text.find("\r\n")
        if text[first + 2 : first + 3] in (" ", "\t"):
            raise SipParseError("continuation line without a header")
        text = _FOLD.sub(" ", text)
    lines = text.split("\r\n")
    if len(lines) > limits.max_headers + 1:
        raise SipParseError(f"more than {limits.max_headers} header fields")
    if max(map(len, lines)) > limits.max_line:
        raise SipParseError(f"header line longer than {limits.max_line} bytes")
    return lines


# Header name spellings (as they stand before the colon) already checked to be
# tokens, with their resolved names: the same few arrive in every message. Bounded
# against hostile input; past the bound, new spellings are checked every time.
MAX_CHECKED_NAMES = 4096
_CHECKED_NAMES: dict[str, tuple[str, str]] = {}


def _parse_fields(lines: list[str], limits: Limits) -> tuple[Headers, list[str]]:
    headers = Headers()
    lengths: list[str] = []
    known = _CHECKED_NAMES
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        item = known.get(name) if colon else None
        if item is None:
            spelling = name
            name = name.rstrip(" \t")
            if not colon or not is_token(name):
                raise SipParseError(f"bad header line {line[:80]!r}")
            item = field_name(name)
            if len(known) < MAX_CHECKED_NAMES:
                known[spelling] = item
        value = value.strip(" \t")
        if item[0] == "content-length":
            lengths.append(value)
        else:
            headers.add_item((item[0], item[1], value))
    return headers, lengths


def _content_length(values: list[str]) -> int | None:
    """The Content-Length, None when absent; conflicting or bad values are errors."""
    if not values:
        return None
    if len(set(values)) > 1:
        raise SipParseError("conflicting Content-Length headers")
    value = values[0]
    if not value.isdigit() or not value.isascii():
        raise SipParseError(f"bad Content-Length {value[:20]!r}")
    if len(value) > 10:
        raise SipParseError(f"Content-Length {value[:20]} is out of range")
    return int(value)


def _split(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("no blank line after the header section")
    return data[:end], data[end + 4 :]


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SipMessage:
    """Parse one datagram. Leading CRLFs are ignored. A body shorter than
    Content-Length is an error (400); a longer one is truncated to it."""
    data = data.lstrip(b"\r\n")
    head, body = _split(data)
    message, length = parse_head(head, limits)
    if length is not None and len(body) < length:
        exc = SipParseError(f"body is {len(body)} bytes, Content-Length says {length}")
        exc.headers, exc.is_request = message.headers, isinstance(message, SipRequest)
        raise exc
    message.body = body if length is None else body[:length]
    return message


class StreamFramer:
    """Frames messages out of a byte stream (TCP/TLS) by Content-Length.

    `feed(data)` returns the messages completed so far. CRLF keepalives
    between messages are skipped. A header section or body over the limits
    raises SipParseError; after any error the connection should be closed.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._scanned = 0
        self._pending: tuple[SipMessage, int] | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[SipMessage]:
        self._buf += data
        out: list[SipMessage] = []
        while True:
            if self._pending is None and not self._read_head():
                return out
            assert self._pending is not None
            message, length = self._pending
            if len(self._buf) < length:
                return out
            message.body = bytes(self._buf[:length])
            del self._buf[:length]
            self._pending = None
            out.append(message)

    def _read_head(self) -> bool:
        buf = self._buf
        skip = 0
        while skip < len(buf) and buf[skip] in (13, 10):
            skip += 1
        if skip:
            del buf[:skip]
            self._scanned = 0
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            if len(buf) > self._limits.max_head_bytes:
                raise SipParseError(
                    f"header section larger than {self._limits.max_head_bytes} bytes", 413
                )
            self._scanned = len(buf)
            return False
        message, length_or_none = parse_head(bytes(buf[:end]), self._limits)
        del buf[: end + 4]
        self._scanned = 0
        length = length_or_none or 0
        if length > self._limits.max_body_bytes:
            raise SipParseError(f"body larger than {self._limits.max_body_bytes} bytes", 413)
        self._pending = (message, length)
        return True
