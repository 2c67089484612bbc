"""Member credentials: user -> HA1 per realm and algorithm, never plain passwords.

The file a server reads (`--credentials`, JSON or YAML, mounted from a
Kubernetes Secret) maps realm -> user -> algorithm -> HA1 in hex::

    example.com:
      alice: {SHA-256: "<64 hex>", MD5: "<32 hex>"}

HA1 is H(user ":" realm ":" password) (RFC 7616 3.4.2); compute it with
`sipfleet-node ha1` or `digest.ha1`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .digest import ALGORITHMS, hash_hex


class CredentialsError(ValueError):
    """A credentials file or mapping that does not have the documented shape."""


@dataclass(frozen=True)
class CredentialStore:
    """HA1 per (realm, user, algorithm); lookups are exact (user parts are case-sensitive)."""

    entries: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)

    def ha1(self, realm: str, user: str, algorithm: str) -> str | None:
        """The stored HA1, or None when the user has none for this realm and algorithm."""
        return self.entries.get(realm.lower(), {}).get(user, {}).get(algorithm)

    @classmethod
    def from_mapping(cls, data: object) -> CredentialStore:
        """Validate realm -> user -> algorithm -> HA1; raises CredentialsError."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise CredentialsError("credentials must map realm -> user -> algorithm -> HA1")
        entries: dict[str, dict[str, dict[str, str]]] = {}
        for realm, users in data.items():
            if not isinstance(realm, str) or not isinstance(users, Mapping):
                raise CredentialsError(f"realm {realm!r} must map user -> algorithm -> HA1")
            out = entries.setdefault(realm.lower(), {})
            for user, hashes in users.items():
                if not isinstance(user, str) or not user or not isinstance(hashes, Mapping):
                    raise CredentialsError(f"user {user!r} in {realm} must map algorithm -> HA1")
                out[user] = {}
                for algorithm, value in hashes.items():
                    if algorithm not in ALGORITHMS:
                        raise CredentialsError(f"{user}@{realm}: unknown algorithm {algorithm!r}")
                    size = len(hash_hex(str(algorithm), ""))
                    text = str(value).lower()
                    if len(text) != size or any(c not in "0123456789abcdef" for c in text):
                        raise CredentialsError(f"{user}@{realm}: {algorithm} HA1 is not hex")
                    out[user][str(algorithm)] = text
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> CredentialStore:
        """Read a JSON or YAML credentials file (JSON is YAML); raises CredentialsError, OSError."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CredentialsError(f"{path}: {exc}") from exc
        return cls.from_mapping(data)
