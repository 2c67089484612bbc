"""Who may use a conference: open, authenticated, or an allow-list of AORs.

The policy of a shard comes from the operator through the admin API. Open
lets anyone in (the From is not verified); authenticated requires valid
digest credentials of the realm; allowlist additionally requires the
authenticated AOR (`sip:user@realm`) to be listed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .digest import SHA256

# The access rule, defined once: the CRD (operator models.AccessSpec), the admin API
# (admin_types.Access) and the server (AccessPolicy) all use these.
Mode = Literal["open", "authenticated", "allowlist"]
"""open: anyone; authenticated: valid digest credentials; allowlist: and listed."""
Algorithm = Literal["SHA-256", "MD5"]
ALGORITHM_CHOICES: tuple[tuple[Algorithm, ...], ...] = (("SHA-256",), ("SHA-256", "MD5"), ("MD5",))
"""The digest algorithm lists a group may have, in challenge order (RFC 8760 2.4:
SHA-256 first; MD5 alone for clients that take the first challenge even when they
cannot compute it, such as sipp 3.6)."""
ALGORITHMS_RULE = "algorithms must be [SHA-256], [SHA-256, MD5] or [MD5]"
AOR_PATTERN = r"^sip:[^@\s]+@[^@\s]+$"
"""An address of record in an allow-list: sip:user@domain."""
_MODES: dict[str, Mode] = {
    "open": "open",
    "authenticated": "authenticated",
    "allowlist": "allowlist",
}
_AOR = re.compile(AOR_PATTERN)


def check_algorithms(algorithms: Sequence[str]) -> None:
    """Raises ValueError (ALGORITHMS_RULE) unless `algorithms` is one of ALGORITHM_CHOICES."""
    if tuple(algorithms) not in ALGORITHM_CHOICES:
        raise ValueError(ALGORITHMS_RULE)


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
        if self.mode not in _MODES:
            raise ValueError(f"mode {self.mode!r} is not open, authenticated or allowlist")
        check_algorithms(self.algorithms)

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
