"""Structured header values: name-addr (From/To/Contact/...), Via, CSeq."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SipParseError
from .scan import params_from_parts, parse_params, quote, split_outside
from .uri import Params, SipUri, format_hostport, format_params, parse_hostport

_NOT_IN_URI = frozenset(" \t<>")
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def is_token(text: str) -> bool:
    """True for a non-empty RFC 3261 token."""
    return bool(text) and _TOKEN.issuperset(text)


def _read_quoted(text: str) -> tuple[str, str]:
    """Read a quoted-string at the start of `text`; return (unescaped, rest)."""
    out = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), text[i + 1 :]
        else:
            out.append(c)
            i += 1
    raise SipParseError(f"unterminated quoted string in {text[:80]!r}")


@dataclass
class NameAddr:
    """`"Display" <uri>;params` or a bare addr-spec. `uri` stays text (any
    scheme is allowed here); `sip_uri` parses it. Params are header params."""

    uri: str
    display: str | None = None
    params: Params = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        display: str | None = None
        if text.startswith('"'):
            display, text = _read_quoted(text)
            text = text.lstrip()
            if not text.startswith("<"):
                raise SipParseError("quoted display name must be followed by <uri>")
        lt = text.find("<")
        if lt >= 0:
            if display is None and lt > 0:
                words = text[:lt].split()
                if not all(is_token(w) for w in words):
                    raise SipParseError(f"display name must be quoted: {text[:lt][:80]!r}")
                display = " ".join(words) or None
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError(f"missing '>' in {text[:80]!r}")
            uri, rest = text[lt + 1 : gt], text[gt + 1 :]
        else:
            uri, sep, rest = text.partition(";")
            uri, rest = uri.rstrip(), sep + rest
            if "?" in uri:
                raise SipParseError(f"a URI with headers must be inside <>: {uri[:80]!r}")
        if ":" not in uri or not _NOT_IN_URI.isdisjoint(uri):
            raise SipParseError(f"bad URI {uri[:80]!r}")
        return cls(uri, display, parse_params(rest))

    @property
    def sip_uri(self) -> SipUri:
        """The URI parsed (SipParseError(416) for non-SIP schemes)."""
        return SipUri.parse(self.uri)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        name = "" if self.display is None else quote(self.display) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"


@dataclass
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=...;received=...;rport`."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        head, *rest = split_outside(text, ";")
        parts = head.split("/", 2)
        if len(parts) != 3:
            raise SipParseError(f"bad Via sent-protocol in {text[:80]!r}")
        words = parts[2].split(None, 1)
        name, version = parts[0].strip(), parts[1].strip()
        if len(words) != 2 or not (is_token(name) and is_token(version) and is_token(words[0])):
            raise SipParseError(f"bad Via {text[:80]!r}")
        host, port = parse_hostport(words[1].strip())
        params = params_from_parts(rest)
        return cls(words[0].upper(), host, port, params, f"{name}/{version}")

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value once filled in (None when absent or still empty)."""
        value = self.params.get("rport")
        return int(value) if value and value.isdigit() else None

    @property
    def sent_by(self) -> str:
        """`host[:port]`, an IPv6 host bracketed (RFC 3261 25.1)."""
        return format_hostport(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def parse_cseq(text: str) -> tuple[int, str]:
    """`CSeq: 4711 INVITE` -> (4711, "INVITE"); the number must fit 32 bits."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not parts[0].isascii():
        raise SipParseError(f"bad CSeq {text[:80]!r}")
    if len(parts[0]) > 10 or int(parts[0]) > 2**31 - 1:
        raise SipParseError(f"CSeq number too large in {text[:80]!r}")
    if not is_token(parts[1]):
        raise SipParseError(f"bad CSeq method {parts[1][:40]!r}")
    return int(parts[0]), parts[1]
