"""Who may use a conference: open, authenticated, or an allow-list of AORs.

The policy of a shard comes from the operator through the admin API. Open
lets anyone in (the From is not verified); authenticated requires valid
digest credentials of the realm; allowlist additionally requires the
authenticated AOR (`sip:user@realm`) to be listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from .digest import ALGORITHMS, SHA256

Mode = Literal["open", "authenticated", "allowlist"]
_MODES: dict[str, Mode] = {
    "open": "open",
    "authenticated": "authenticated",
    "allowlist": "allowlist",
}
_AOR = re.compile(r"^sip:[^@\s]+@[^@\s]+$")


def aor(user: str, host: str) -> str:
    """The address-of-record `sip:user@host`, host lower-cased (RFC 3261 19.1.4)."""
    return f"sip:{user}@{host.lower()}"


@dataclass(frozen=True)
class AccessPolicy:
    """The access policy of one conference.

    `allow` holds AORs (`sip:user@host`) for mode allowlist. `algorithms` are
    the digest algorithms members may answer with, challenged in this order:
    SHA-256 alone by default; (SHA-256, MD5) lets older phones in (RFC 8760
    keeps MD5 for backward compatibility only); (MD5,) is for clients that
    take the first challenge even when they cannot compute it (sipp 3.6).
    Raises ValueError for an empty, unknown or SHA-256-after-MD5 list.
    """

    mode: Mode = "authenticated"
    allow: frozenset[str] = field(default_factory=frozenset)
    algorithms: tuple[str, ...] = (SHA256,)

    def __post_init__(self) -> None:
        if self.mode not in ("open", "authenticated", "allowlist"):
            raise ValueError(f"mode {self.mode!r} is not open, authenticated or allowlist")
        if not self.algorithms or any(a not in ALGORITHMS for a in self.algorithms):
            raise ValueError(f"algorithms {self.algorithms!r} must be SHA-256 and/or MD5")
        ordered = tuple(a for a in ALGORITHMS if a in self.algorithms)
        if ordered != self.algorithms:
            raise ValueError("algorithms must be listed once each, SHA-256 first (RFC 8760 2.4)")

    @classmethod
    def from_json(cls, data: object) -> AccessPolicy:
        """From the admin API's `access` object: {"policy", "allow", "algorithms"}, each
        optional (SipConference.spec.access). Raises ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("access must be an object with policy, allow and algorithms")
        mode = _MODES.get(str(data.get("policy", "authenticated")))
        if mode is None:
            raise ValueError("access.policy must be open, authenticated or allowlist")
        allow = data.get("allow", [])
        algorithms = data.get("algorithms", [SHA256])
        if not isinstance(allow, list) or not all(_AOR.match(str(a)) for a in allow):
            raise ValueError("access.allow must be a list of AORs (sip:user@domain)")
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise ValueError("access.algorithms must be a list of SHA-256 and/or MD5")
        listed = frozenset(aor(*str(a)[4:].rsplit("@", 1)) for a in allow)
        return cls(mode, listed, tuple(algorithms))

    def to_json(self) -> dict[str, object]:
        """The admin API's `access` object (the inverse of from_json)."""
        return {
            "policy": self.mode,
            "allow": sorted(self.allow),
            "algorithms": list(self.algorithms),
        }

    def permits(self, identity: str) -> bool:
        """Whether an authenticated AOR may use the conference."""
        return self.mode != "allowlist" or identity in self.allow


SECURE_DEFAULT = AccessPolicy()
"""What a group without a policy of its own gets, and what a missing group answers as."""
OPEN = AccessPolicy(mode="open")
