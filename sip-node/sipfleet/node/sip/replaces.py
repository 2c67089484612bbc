"""The Replaces header (RFC 3891), also as an escaped header in a Refer-To URI."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from .errors import SipParseError
from .scan import parse_params
from .uri import SipUri, unescape


@dataclass(frozen=True)
class Replaces:
    """`Replaces: call-id;to-tag=..;from-tag=..[;early-only]`."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @classmethod
    def parse(cls, text: str) -> Replaces:
        call_id, sep, rest = text.strip().partition(";")
        params = parse_params(sep + rest)
        to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
        if not call_id or not to_tag or not from_tag:
            raise SipParseError(f"Replaces needs a Call-ID, to-tag and from-tag: {text[:80]!r}")
        return cls(call_id, to_tag, from_tag, "early-only" in params)

    def __str__(self) -> str:
        early = ";early-only" if self.early_only else ""
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}{early}"


def refer_target(uri: str, replaces: Replaces | None = None) -> str:
    """A Refer-To value `<uri?Replaces=...>` (escaped as RFC 3891 section 6.1 shows)."""
    if replaces is None:
        return f"<{uri}>"
    return f"<{uri}?Replaces={quote(str(replaces), safe='')}>"


def replaces_in(uri: SipUri) -> Replaces | None:
    """The Replaces embedded in a (Refer-To) URI's headers, if any."""
    for part in uri.headers.split("&"):
        name, _, value = part.partition("=")
        if name.lower() == "replaces":
            return Replaces.parse(unescape(value))
    return None
