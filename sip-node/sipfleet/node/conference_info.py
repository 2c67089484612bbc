"""RFC 4575 conference-info documents: a full state, then partial updates."""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

CONTENT_TYPE = "application/conference-info+xml"
_NS = "urn:ietf:params:xml:ns:conference-info"


def _user(entity: str, state: str) -> str:
    if state == "deleted":
        return f'<user entity={quoteattr(entity)} state="deleted"/>'
    return (
        f'<user entity={quoteattr(entity)} state="full"><endpoint entity='
        f"{quoteattr(entity)}><status>connected</status></endpoint></user>"
    )


def document(
    entity: str,
    version: int,
    count: int,
    added: Iterable[str],
    removed: Iterable[str] = (),
    *,
    full: bool,
) -> bytes:
    """A conference-info document. For `full`, `added` is every member; for a
    partial update it is the members who joined and `removed` those who left."""
    users = [_user(u, "full") for u in sorted(added)]
    users += [_user(u, "deleted") for u in sorted(removed)]
    state = "full" if full else "partial"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<conference-info xmlns="{_NS}" '
        f'entity={quoteattr(entity)} state="{state}" version="{version}">'
        f"<conference-state><user-count>{count}</user-count></conference-state>"
        f"<users>{''.join(users)}</users></conference-info>\n"
    ).encode()
