"""Digest credentials and challenges (RFC 3261 22.4, RFC 7616 3.3-3.4, RFC 8760).

Only `qop=auth` is offered and accepted. The algorithms are SHA-256 (offered
first, RFC 8760 2.4) and MD5 (only where a conference allows it); `-sess`
variants are refused. Parsing is linear in the header length and bounded:
anything longer than MAX_HEADER characters or with more than MAX_PARAMS
parameters is refused with DigestError, the only exception raised here.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

SHA256: Final = "SHA-256"
MD5: Final = "MD5"
ALGORITHMS: Final = (SHA256, MD5)
"""Supported algorithms in order of preference (RFC 8760 2.4: strongest first)."""

MAX_HEADER: Final = 4096
"""Longest Authorization field value accepted, in characters."""
MAX_PARAMS: Final = 16
"""Most auth-params accepted in one Authorization field."""
MAX_VALUE: Final = 1024
"""Longest single auth-param value accepted, in characters."""

_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
_HEX: Final = frozenset("0123456789abcdef")
_REQUIRED: Final = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")


class DigestError(Exception):
    """An Authorization field that cannot be parsed or is not acceptable.

    `reason` is a short label, also used as the metric label of the failure
    (malformed, algorithm, qop).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Credentials:
    """The digest-response of an Authorization field (RFC 3261 25.1, RFC 7616 3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    cnonce: str
    nc: int
    nc_text: str
    opaque: str | None


def hash_hex(algorithm: str, text: str) -> str:
    """H(text) in lower-case hex for SHA-256 or MD5 (RFC 7616 3.4.1)."""
    name = "sha256" if algorithm == SHA256 else "md5"
    return hashlib.new(name, text.encode("utf-8")).hexdigest()


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """HA1 = H(username ":" realm ":" password) (RFC 7616 3.4.2), what credential files hold."""
    return hash_hex(algorithm, f"{username}:{realm}:{password}")


def expected_response(ha1_hex: str, method: str, creds: Credentials) -> str:
    """The request-digest for qop=auth (RFC 7616 3.4.1): H(HA1:nonce:nc:cnonce:qop:HA2)."""
    algorithm = creds.algorithm
    ha2 = hash_hex(algorithm, f"{method}:{creds.uri}")
    text = f"{ha1_hex}:{creds.nonce}:{creds.nc_text}:{creds.cnonce}:auth:{ha2}"
    return hash_hex(algorithm, text)


def response_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of two lower-case hex digests."""
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))


def challenge(realm: str, nonce: str, algorithm: str, *, stale: bool = False) -> str:
    """One WWW-Authenticate field value (RFC 7616 3.3); send one per algorithm, SHA-256 first."""
    value = f'Digest realm="{realm}", qop="auth", algorithm={algorithm}, nonce="{nonce}"'
    return value + (", stale=true" if stale else "")


def _read_token(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and text[pos] in _TOKEN_CHARS:
        pos += 1
    return text[start:pos], pos


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_value(text: str, pos: int) -> tuple[str, int]:
    if pos < len(text) and text[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(text):
            char = text[pos]
            if char == "\\":
                if pos + 1 >= len(text):
                    break
                out.append(text[pos + 1])
                pos += 2
                continue
            if char == '"':
                return "".join(out), pos + 1
            out.append(char)
            pos += 1
        raise DigestError("malformed", "unterminated quoted-string")
    value, pos = _read_token(text, pos)
    if not value:
        raise DigestError("malformed", "empty auth-param value")
    return value, pos


def parse_params(value: str) -> dict[str, str]:
    """Split `Digest a=b, c="d"` into lower-cased names and unquoted values (RFC 3261 25.1).

    Raises DigestError for another scheme, duplicate names, bad syntax or sizes
    beyond MAX_HEADER / MAX_PARAMS / MAX_VALUE.
    """
    if len(value) > MAX_HEADER:
        raise DigestError("malformed", "Authorization too long")
    pos = _skip_ws(value, 0)
    scheme, pos = _read_token(value, pos)
    if scheme.lower() != "digest":
        raise DigestError("malformed", "scheme is not Digest")
    params: dict[str, str] = {}
    while True:
        pos = _skip_ws(value, pos)
        name, pos = _read_token(value, pos)
        if not name:
            raise DigestError("malformed", "expected an auth-param name")
        pos = _skip_ws(value, pos)
        if pos >= len(value) or value[pos] != "=":
            raise DigestError("malformed", "expected '=' after an auth-param name")
        param, pos = _read_value(value, _skip_ws(value, pos + 1))
        name = name.lower()
        if name in params:
            raise DigestError("malformed", f"duplicate {name}")
        if len(param) > MAX_VALUE:
            raise DigestError("malformed", f"{name} too long")
        params[name] = param
        if len(params) > MAX_PARAMS:
            raise DigestError("malformed", "too many auth-params")
        pos = _skip_ws(value, pos)
        if pos >= len(value):
            return params
        if value[pos] != ",":
            raise DigestError("malformed", "expected ',' between auth-params")
        pos += 1


def parse_credentials(value: str) -> Credentials:
    """Parse an Authorization field value into Credentials (RFC 3261 22.4, RFC 7616 3.4).

    Requires qop=auth with nc and cnonce (RFC 7616 3.4: the server offered only
    qop=auth), nc as 8 hex digits, response as lower-case hex, and an algorithm
    of ALGORITHMS (absent means MD5, RFC 7616 3.3). Raises DigestError.
    """
    params = parse_params(value)
    for name in _REQUIRED:
        if name not in params:
            raise DigestError("malformed", f"missing {name}")
    if params["qop"].lower() != "auth":
        raise DigestError("qop", "only qop=auth is accepted")
    algorithm = params.get("algorithm", MD5).upper()
    if algorithm not in ALGORITHMS:
        raise DigestError("algorithm", "unsupported algorithm")
    nc_text = params["nc"]
    if len(nc_text) != 8 or not set(nc_text.lower()) <= _HEX:
        raise DigestError("malformed", "nc is not 8 hex digits")
    response = params["response"].lower()
    if len(response) != len(hash_hex(algorithm, "")) or not set(response) <= _HEX:
        raise DigestError("malformed", "response is not a digest")
    if not params["username"] or not params["cnonce"]:
        raise DigestError("malformed", "empty username or cnonce")
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response,
        algorithm=algorithm,
        cnonce=params["cnonce"],
        nc=int(nc_text, 16),
        nc_text=nc_text,
        opaque=params.get("opaque"),
    )
