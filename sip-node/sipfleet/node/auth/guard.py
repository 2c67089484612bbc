"""One verdict per request: accept (with the authenticated AOR), challenge, refuse or drop.

`Guard.check` applies a conference's AccessPolicy to a request's
Authorization fields (RFC 3261 22.1-22.4, RFC 7616 3.3-3.5):

- open policy: accepted, no identity;
- no credentials for our realm, or ones we cannot vouch for (not our nonce,
  wrong password, unknown user, replayed nc, an algorithm the conference does
  not allow): 401 with a fresh challenge, one WWW-Authenticate per allowed
  algorithm, SHA-256 first (RFC 8760 2.4);
- the right password with an expired nonce: 401 with stale=true (RFC 7616 3.3);
- a malformed Authorization or a `uri` that is not the Request-URI: 400
  (RFC 7616 3.4.6);
- authenticated but not on the allow-list: 403 (RFC 3261 21.4.4);
- a source locked out after repeated failures: dropped, no answer (the
  transport drops its requests before they open a transaction; `Drop` only
  reaches a request already in flight).

An unknown user is checked against a dummy HA1 so that it costs and answers
the same as a wrong password. Every failure carries a `reason` for the
sipfleet_node_auth_failures_total metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .credentials import CredentialStore
from .digest import (
    MD5,
    SHA256,
    Credentials,
    DigestError,
    challenge,
    expected_response,
    hash_hex,
    parse_credentials,
    response_matches,
)
from .lockout import Lockout
from .nonce import NonceCounts, NonceIssuer, NonceState
from .policy import AccessPolicy, aor

MAX_AUTHORIZATION_FIELDS = 4
"""Authorization fields looked at per request (one per realm is all a client needs)."""

_LOCKING = frozenset({"malformed", "bad_response", "unknown_user", "replayed", "uri_mismatch"})
"""Failure reasons that count towards a source's lockout (guesses and forgeries)."""

_DUMMY_HA1 = {SHA256: hash_hex(SHA256, "sipfleet:dummy"), MD5: hash_hex(MD5, "sipfleet:dummy")}


@dataclass(frozen=True)
class Accept:
    """Go on; `identity` is the authenticated AOR, or None under an open policy."""

    identity: str | None


@dataclass(frozen=True)
class Challenge:
    """Answer 401 with these WWW-Authenticate values; `reason` is None for a first request."""

    www_authenticate: tuple[str, ...]
    reason: str | None


@dataclass(frozen=True)
class Refuse:
    """Answer `status` (400 or 403); `reason` is the failure label."""

    status: int
    reason: str


@dataclass(frozen=True)
class Drop:
    """Send nothing: the source is locked out."""

    reason: str = "locked_out"


Verdict = Accept | Challenge | Refuse | Drop


class Guard:
    """Authenticates requests against a CredentialStore; holds nonce and lockout state."""

    def __init__(
        self,
        credentials: CredentialStore,
        issuer: NonceIssuer,
        counts: NonceCounts | None = None,
        lockout: Lockout | None = None,
    ) -> None:
        self.credentials, self.issuer = credentials, issuer
        self.counts = NonceCounts(lifetime=issuer.lifetime) if counts is None else counts
        self.lockout = Lockout() if lockout is None else lockout

    def protects(self, realm: str) -> bool:
        """Whether the realm has credentials, so its unknown groups must be challenged too."""
        return bool(self.credentials.entries.get(realm.lower()))

    def challenge(
        self,
        realm: str,
        policy: AccessPolicy,
        now: float,
        *,
        reason: str | None,
        stale: bool = False,
    ) -> Challenge:
        """A fresh 401 challenge for `realm`, one field per algorithm the policy allows."""
        nonce = self.issuer.issue(realm, now)
        fields = tuple(challenge(realm, nonce, a, stale=stale) for a in policy.algorithms)
        return Challenge(fields, reason)

    def check(
        self,
        *,
        method: str,
        uri: str,
        authorization: Sequence[str],
        realm: str,
        policy: AccessPolicy,
        source: str,
        now: float,
    ) -> Verdict:
        """The verdict for one request (see the module docstring); `now` in seconds."""
        if self.lockout.locked(source, now):
            return Drop()
        if policy.mode == "open":
            return Accept(None)
        verdict = self._authenticate(method, uri, authorization, realm, policy, now)
        if isinstance(verdict, Accept):
            self.lockout.succeed(source, now)
            if verdict.identity is not None and not policy.permits(verdict.identity):
                return Refuse(403, "not_allowed")
            return verdict
        if verdict.reason in _LOCKING:
            self.lockout.fail(source, now)  # the lock applies to the requests that follow
        return verdict

    def _authenticate(
        self,
        method: str,
        uri: str,
        authorization: Sequence[str],
        realm: str,
        policy: AccessPolicy,
        now: float,
    ) -> Accept | Challenge | Refuse:
        creds: Credentials | None = None
        try:
            for value in authorization[:MAX_AUTHORIZATION_FIELDS]:
                parsed = parse_credentials(value)
                if parsed.realm.lower() == realm.lower():
                    creds = parsed
                    break
        except DigestError as exc:
            if exc.reason == "malformed":
                return Refuse(400, "malformed")
            return self.challenge(realm, policy, now, reason=exc.reason)
        if creds is None:
            return self.challenge(realm, policy, now, reason=None)
        if creds.algorithm not in policy.algorithms:
            return self.challenge(realm, policy, now, reason="algorithm")
        if creds.uri != uri:
            return Refuse(400, "uri_mismatch")
        state = self.issuer.check(realm, creds.nonce, now)
        if state is NonceState.INVALID:
            return self.challenge(realm, policy, now, reason="bad_nonce")
        stored = self.credentials.ha1(realm, creds.username, creds.algorithm)
        expected = expected_response(stored or _DUMMY_HA1[creds.algorithm], method, creds)
        if not response_matches(expected, creds.response) or stored is None:
            return self.challenge(
                realm, policy, now, reason="bad_response" if stored else "unknown_user"
            )
        if state is NonceState.STALE:
            return self.challenge(realm, policy, now, reason="stale_nonce", stale=True)
        if not self.counts.accept(creds.nonce, creds.nc, self.issuer.issued_at(creds.nonce), now):
            return self.challenge(realm, policy, now, reason="replayed")
        return Accept(aor(creds.username, realm))
