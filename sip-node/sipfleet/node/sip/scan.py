"""Linear-time scanning helpers for header values (quotes and <> aware)."""

from __future__ import annotations

from .errors import SipParseError


def split_outside(text: str, sep: str) -> list[str]:
    """Split `text` on `sep` where it is outside quoted strings and <...>.

    One pass; backslash escapes inside quotes are honoured. An unterminated
    quote or `<` is a parse error.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    in_quote = in_angle = False
    while i < n:
        c = text[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif in_angle:
            if c == ">":
                in_angle = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            in_angle = True
        elif c == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_quote or in_angle:
        raise SipParseError(f"unbalanced quote or '<' in {text[:80]!r}")
    parts.append(text[start:])
    return parts


def split_commas(text: str) -> list[str]:
    """Split a multi-valued header (`a, b, c`) into stripped, non-empty values."""
    return [p.strip() for p in split_outside(text, ",") if p.strip()]


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `;name=value;flag...` into an ordered dict (names lower-cased,
    values kept verbatim, including quotes). `text` may be empty."""
    if not text:
        return {}
    parts = split_outside(text, ";")
    if parts[0].strip():
        raise SipParseError(f"expected ';' before parameters in {text[:80]!r}")
    return params_from_parts(parts[1:])


def params_from_parts(parts: list[str]) -> dict[str, str | None]:
    """The parameters of already-split `name=value` / `flag` parts."""
    params: dict[str, str | None] = {}
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            raise SipParseError(f"empty parameter name in {';'.join(parts)[:80]!r}")
        params[name] = value.strip() if eq else None
    return params


def unquote(text: str) -> str:
    """Remove surrounding quotes and backslash escapes from a quoted-string."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner):
            i += 1
        out.append(inner[i])
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    """Make a quoted-string, escaping `"` and backslash."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
