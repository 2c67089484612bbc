"""A signalling-only conference answers an SDP offer with every stream inactive."""

from __future__ import annotations


def inactive_answer(offer: bytes, host: str, session_id: int) -> bytes:
    """Answer each m= line of `offer` with port 9 (discard) and a=inactive (RFC 3264 6)."""
    lines = [
        "v=0",
        f"o=sipfleet {session_id} {session_id} IN IP4 {host}",
        "s=sipfleet",
        f"c=IN IP4 {host}",
        "t=0 0",
    ]
    for raw in offer.decode("utf-8", "replace").splitlines():
        if raw.startswith("m="):
            parts = raw[2:].split()
            if len(parts) >= 4:
                lines += [f"m={parts[0]} 9 {parts[2]} {parts[3]}", "a=inactive"]
    return ("\r\n".join(lines) + "\r\n").encode()
