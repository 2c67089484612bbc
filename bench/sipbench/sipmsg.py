"""Just enough SIP text handling for the benchmark's own peers (sender and members).

Deliberately independent of sipfleet's parser: the benchmark must not measure
sip-node with sip-node's own code on the other side of the wire.
"""

from __future__ import annotations

import itertools
import os

_COMPACT = {b"v": b"via", b"f": b"from", b"t": b"to", b"i": b"call-id", b"m": b"contact"}
_ECHOED = (b"via", b"from", b"to", b"call-id", b"cseq")
_counter = itertools.count(1)


def header_lines(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Start line and (lower-case long name, raw line) for each header line."""
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    out: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        out.append((_COMPACT.get(name, name), line))
    return lines[0], out


def header(data: bytes, name: bytes) -> bytes | None:
    """Value of the first header `name` (long lower-case form), or None."""
    for hname, line in header_lines(data)[1]:
        if hname == name:
            return line.split(b":", 1)[1].strip()
    return None


def status_code(data: bytes) -> int | None:
    """The status code of a response, None for a request."""
    if not data.startswith(b"SIP/2.0 "):
        return None
    return int(data[8:11])


def response(
    request: bytes, code: int, reason: bytes, *, to_tag: bytes = b"", extra: bytes = b""
) -> bytes:
    """A response to `request`: echoes Via, From, To (+tag), Call-ID, CSeq."""
    parts = [b"SIP/2.0 %d %s" % (code, reason)]
    for hname, line in header_lines(request)[1]:
        if hname not in _ECHOED:
            continue
        if hname == b"to" and to_tag and b";tag=" not in line:
            line += b";tag=" + to_tag
        parts.append(line)
    if extra:
        parts.append(extra.rstrip(b"\r\n"))
    parts.append(b"Content-Length: 0")
    return b"\r\n".join(parts) + b"\r\n\r\n"


def branch() -> str:
    return f"z9hG4bK-bench-{os.getpid()}-{next(_counter)}"


def request(
    method: str,
    uri: str,
    *,
    local: tuple[str, int],
    from_uri: str,
    to_uri: str,
    call_id: str,
    cseq: int = 1,
    from_tag: str = "bench",
    to_tag: str = "",
    contact: str | None = None,
    body: bytes = b"",
    content_type: str = "text/plain",
    extra: str = "",
) -> bytes:
    """A request from `local` over UDP with a fresh branch."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch={branch()};rport",
        "Max-Forwards: 70",
        f"From: <{from_uri}>;tag={from_tag}",
        f"To: <{to_uri}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if contact:
        lines.append(f"Contact: <{contact}>")
    if extra:
        lines.append(extra.rstrip("\r\n"))
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
