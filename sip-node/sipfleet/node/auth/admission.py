"""Admission of out-of-dialog INVITE, MESSAGE and SUBSCRIBE: the guard plus SIP identity rules.

`Admission.admit` turns a Guard verdict into what the server does with a
request addressed to a group (pure: the request, the group, the source and the
time in, a `Proceed` or an `Answer` out):

- the group's policy is the one the operator set for the shard, else the
  server's default; a group this server does not know gets the secure default
  when the realm has credentials, so a 401 does not tell a missing group from
  a protected one (RFC 3261 22.1 lets a server challenge any request; the
  realm is the domain, the same for both). Only an authenticated request to a
  missing group gets its 404.
- authenticated requests must carry a From whose user and host are the
  authenticated user and realm, or get 403 (RFC 3261 22.1: a server may refuse
  requests whose From does not match the credentials); the identity the group
  sees is therefore the authenticated one.
- SUBSCRIBE to a protected group's roster (event package `conference`, RFC
  4575) is for its members: 403 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sipfleet.node.sip import SipRequest

from .guard import Accept, Challenge, Drop, Guard, Refuse
from .policy import OPEN, SECURE_DEFAULT, AccessPolicy, aor

GUARDED = frozenset({"INVITE", "MESSAGE", "SUBSCRIBE"})
"""Methods that are admitted here when they start a dialog or stand alone."""


@dataclass(frozen=True)
class Proceed:
    """Handle the request; `identity` is the authenticated AOR (None: open policy)."""

    identity: str | None


@dataclass(frozen=True)
class Answer:
    """Answer with `status` and `headers` (None: send nothing); `failure` is the metric label."""

    status: int | None
    headers: tuple[tuple[str, str], ...] = ()
    reason: str | None = None
    failure: str | None = None


@dataclass
class Admission:
    """Per-server admission state: the guard, per-group policies and the default."""

    guard: Guard
    realm: str
    default: AccessPolicy = OPEN
    policies: dict[str, AccessPolicy] = field(default_factory=dict)
    shared_sources: frozenset[str] = frozenset()
    """Addresses that carry many members (trusted edge proxies; the fleet's own
    addresses, which SNAT can put on members' packets too): a failure through one
    counts towards the lockout of that member (source and From AOR), not the source."""

    def policy_for(self, group: str | None) -> AccessPolicy | None:
        """The policy of `group`; for an unknown group (None) the secure default when the
        realm has credentials, else None (answer 404 as usual)."""
        if group is None:
            return SECURE_DEFAULT if self.guard.protects(self.realm) else None
        return self.policies.get(group, self.default)

    def admit(
        self,
        request: SipRequest,
        group: str | None,
        source: str,
        now: float,
        is_member: Callable[[str, str], bool],
    ) -> Proceed | Answer:
        """What to do with a request to `group` (None: no such group) from `source` at `now`.

        `is_member(group, aor)` says whether an AOR is a member of the group
        (for SUBSCRIBE). Raises SipParseError for a From that does not parse.
        """
        policy = self.policy_for(group)
        if policy is None:
            return Proceed(None)
        if source in self.shared_sources:
            sender = request.from_.sip_uri
            source = f"{source} {aor(sender.user or '', sender.host)}"
        verdict = self.guard.check(
            method=request.method,
            uri=request.uri,
            authorization=request.headers.get_all("Authorization"),
            realm=self.realm,
            policy=policy,
            source=source,
            now=now,
        )
        if isinstance(verdict, Challenge):
            headers = tuple(("WWW-Authenticate", value) for value in verdict.www_authenticate)
            return Answer(401, headers, failure=verdict.reason)
        if isinstance(verdict, Refuse):
            reason = "Not Allowed" if verdict.status == 403 else "Bad Authorization"
            return Answer(verdict.status, reason=reason, failure=verdict.reason)
        if isinstance(verdict, Drop):
            return Answer(None, failure=verdict.reason)
        return self._identity_rules(request, group, verdict, is_member)

    def _identity_rules(
        self,
        request: SipRequest,
        group: str | None,
        verdict: Accept,
        is_member: Callable[[str, str], bool],
    ) -> Proceed | Answer:
        identity = verdict.identity
        if identity is None:
            return Proceed(None)
        sender = request.from_.sip_uri
        if aor(sender.user or "", sender.host) != identity:
            return Answer(403, reason="From Is Not The Authenticated User", failure="from_mismatch")
        if request.method == "SUBSCRIBE" and group is not None and not is_member(group, identity):
            return Answer(403, reason="Not A Member", failure="not_member")
        return Proceed(identity)
