"""Who may use a conference: open, authenticated, or an allow-list of AORs.

The policy of a shard comes from the operator through the admin API. Open
lets anyone in (the From is not verified); authenticated requires valid
digest credentials of the realm; allowlist additionally requires the
authenticated AOR (`sip:user@realm`) to be listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .digest import MD5, SHA256

Mode = Literal["open", "authenticated", "allowlist"]


def aor(user: str, host: str) -> str:
    """The address-of-record `sip:user@host`, host lower-cased (RFC 3261 19.1.4)."""
    return f"sip:{user}@{host.lower()}"


@dataclass(frozen=True)
class AccessPolicy:
    """The access policy of one conference.

    `allow` holds AORs (`sip:user@host`) for mode allowlist; `allow_md5` lets
    members answer an MD5 challenge besides SHA-256 (RFC 8760 leaves MD5 for
    backward compatibility only).
    """

    mode: Mode = "authenticated"
    allow: frozenset[str] = field(default_factory=frozenset)
    allow_md5: bool = False

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Algorithms to challenge with, SHA-256 first (RFC 8760 2.4)."""
        return (SHA256, MD5) if self.allow_md5 else (SHA256,)

    def permits(self, identity: str) -> bool:
        """Whether an authenticated AOR may use the conference."""
        return self.mode != "allowlist" or identity in self.allow


SECURE_DEFAULT = AccessPolicy()
"""What a group without a policy of its own gets, and what a missing group answers as."""
OPEN = AccessPolicy(mode="open")
