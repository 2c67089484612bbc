"""message/cpim wrapping and unwrapping (RFC 3862)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SipParseError

CPIM_TYPE = "message/cpim"


@dataclass
class CpimMessage:
    """A CPIM message: `from_`/`to` are the header values (e.g. `<sip:a@x>`);
    `headers` holds other message headers (DateTime, Subject, NS, ...)."""

    from_: str
    to: str
    content_type: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def wrap_cpim(message: CpimMessage) -> bytes:
    """Serialise: message headers, blank line, content headers, blank line, body."""
    lines = [f"From: {message.from_}", f"To: {message.to}"]
    lines += [f"{name}: {value}" for name, value in message.headers]
    head = "\r\n".join(lines) + "\r\n\r\n"
    content = f"Content-Type: {message.content_type}\r\nContent-Length: {len(message.body)}\r\n\r\n"
    return (head + content).encode() + message.body


def _fields(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipParseError(f"bad CPIM header line {line[:80]!r}")
        out.append((name.strip(), value.strip()))
    return out


def unwrap_cpim(data: bytes) -> CpimMessage:
    """Parse a message/cpim body."""
    try:
        message_block, rest = data.split(b"\r\n\r\n", 1)
        content_block, body = rest.split(b"\r\n\r\n", 1)
    except ValueError:
        raise SipParseError(
            "CPIM body needs message headers, content headers and content"
        ) from None
    headers = _fields(message_block)
    content = {name.lower(): value for name, value in _fields(content_block)}
    found = {name.lower(): value for name, value in headers}
    if "from" not in found or "to" not in found:
        raise SipParseError("CPIM message needs From and To headers")
    others = [(n, v) for n, v in headers if n.lower() not in ("from", "to")]
    content_type = content.get("content-type", "text/plain")
    return CpimMessage(found["from"], found["to"], content_type, body, others)
