"""SIP/SIPS/tel URIs (RFC 3261 section 19.1, RFC 3966) and host:port parsing."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .errors import SipParseError
from .scan import parse_params

Params = dict[str, str | None]

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_HEX = frozenset("0123456789abcdefABCDEF")
# RFC 3261 unreserved + user-unreserved + password chars (escapes checked separately).
_USER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/:%"
)


def unescape(text: str) -> str:
    """Decode %XX escapes; a bad escape is a parse error."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    raw = text.encode("utf-8", "surrogateescape")
    while i < len(raw):
        if raw[i] == 0x25:  # '%'
            pair = raw[i + 1 : i + 3].decode("ascii", "replace")
            if len(pair) != 2 or not _HEX.issuperset(pair):
                raise SipParseError(f"bad %-escape in {text!r}")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Split `host[:port]`; IPv6 references keep their brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not _IPV6_CHARS.issuperset(text[1:end]) or ":" not in text[1:end]:
            raise SipParseError(f"bad IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"junk after IPv6 reference in {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_ = text.partition(":")
        port_text = port_text_ if sep else None
        if not host or not _HOST_CHARS.issuperset(host):
            raise SipParseError(f"bad host {host!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise SipParseError(f"bad port {port_text!r}")
    return host, int(port_text)


def format_host(host: str) -> str:
    """A host as written in a SIP URI, Via sent-by or Route: an IPv6 address
    becomes an IPv6reference `[addr]` (RFC 3261 section 25.1, RFC 5118 4.1);
    a host name, an IPv4 address or an already bracketed reference is unchanged."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def format_hostport(host: str, port: int | None) -> str:
    """`host[:port]` with IPv6 addresses bracketed (RFC 3261 25.1 hostport), so
    the port can never be read as part of the address (RFC 5118 4.3, 4.4)."""
    return format_host(host) if port is None else f"{format_host(host)}:{port}"


def address_of(host: str) -> str:
    """The socket form of a URI/Via host: an IPv6reference loses its brackets
    (`[::1]` -> `::1`); anything else is returned unchanged."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host (bracketed or not) spells, or None for a host name."""
    try:
        return ipaddress.ip_address(address_of(host))
    except ValueError:
        return None


def same_address(a: str, b: str) -> bool:
    """Do two hosts name the same IP address? IPv6 spellings are compared as
    addresses (`[::1]`, `::1`, `0::1` agree); host names compare case-insensitively."""
    if a == b:
        return True
    ip_a, ip_b = ip_literal(a), ip_literal(b)
    if ip_a is not None and ip_b is not None:
        return ip_a == ip_b
    return address_of(a).lower() == address_of(b).lower()


def format_params(params: Params) -> str:
    """Serialise parameters as `;name=value;flag`."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class SipUri:
    """A parsed URI. `user`/`password` keep their %-escapes (see `unescape`);
    `params` names are lower-cased; `headers` is the raw `?...` part."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse `sip:`, `sips:` or `tel:`; other schemes raise SipParseError(416)."""
        scheme, sep, rest = text.partition(":")
        if not sep or not scheme or not scheme[0].isalpha():
            raise SipParseError(f"not a URI: {text!r}")
        scheme = scheme.lower()
        if scheme == "tel":
            number, sep, params = rest.partition(";")
            if not number:
                raise SipParseError(f"empty tel URI {text!r}")
            return cls(scheme, "", user=number, params=parse_params(sep + params))
        if scheme not in ("sip", "sips"):
            raise SipParseError(f"unsupported URI scheme {scheme!r}", 416)
        user = password = None
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            if not userinfo or not _USER_CHARS.issuperset(userinfo):
                raise SipParseError(f"bad user part in {text!r}")
            unescape(userinfo)  # validates the escapes
            user, psep, pw = userinfo.partition(":")
            password = pw if psep else None
        rest, _, headers = rest.partition("?")
        hostport, sep, params = rest.partition(";")
        host, port = parse_hostport(hostport)
        return cls(scheme, host.lower(), user, password, port, parse_params(sep + params), headers)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + ("" if self.password is None else ":" + self.password) + "@"
        hostport = format_hostport(self.host, self.port)
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{hostport}{format_params(self.params)}{headers}"

    def same_as(self, other: SipUri) -> bool:
        """URI equality in the spirit of RFC 3261 19.1.4 (escapes decoded, host
        case-insensitive; transport/user/ttl/method/maddr params must agree)."""
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        mine = None if self.user is None else unescape(self.user)
        theirs = None if other.user is None else unescape(other.user)
        if mine != theirs or self.password != other.password:
            return False
        for name in ("transport", "user", "ttl", "method", "maddr"):
            a, b = self.params.get(name), other.params.get(name)
            if (a or "").lower() != (b or "").lower():
                return False
        return True
