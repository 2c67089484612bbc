"""message/sipfrag bodies (RFC 3515 NOTIFYs) and the Subscription-State value."""

from __future__ import annotations

from .errors import SipParseError

SIPFRAG_TYPE = "message/sipfrag;version=2.0"


def build_sipfrag(status: int, reason: str) -> bytes:
    """`SIP/2.0 200 OK` as a sipfrag body."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()


def parse_sipfrag(body: bytes) -> tuple[int, str]:
    """The (status, reason) of a sipfrag's status line."""
    line = body.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.upper().startswith("SIP/") or len(code) != 3 or not code.isdigit():
        raise SipParseError(f"sipfrag has no status line: {line[:80]!r}")
    return int(code), reason.strip()


def subscription_state(state: str, *, expires: int | None = None, reason: str | None = None) -> str:
    """`active;expires=60` / `terminated;reason=noresource` (RFC 6665)."""
    value = state
    if expires is not None:
        value += f";expires={expires}"
    if reason is not None:
        value += f";reason={reason}"
    return value
