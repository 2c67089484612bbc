"""Admission of group requests: policy per group, missing groups, From and roster rules."""

from __future__ import annotations

import pytest
from sipfleet.node.auth.admission import Admission, Answer, Proceed
from sipfleet.node.auth.credentials import CredentialStore
from sipfleet.node.auth.digest import SHA256, Credentials, expected_response, ha1
from sipfleet.node.auth.guard import Guard
from sipfleet.node.auth.nonce import NonceIssuer
from sipfleet.node.auth.policy import OPEN, AccessPolicy
from sipfleet.node.sip import Headers, SipRequest

REALM = "example.com"
GROUP = "sip:team@example.com"
URI = "sip:team@127.0.0.1:5060"
NOW = 1000.0
STORE = CredentialStore.from_mapping(
    {REALM: {"alice": {SHA256: ha1(SHA256, "alice", REALM, "pw")}}}
)


def request(method: str, sender: str, authorization: str | None = None) -> SipRequest:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx"),
            ("From", f"<{sender}>;tag=1"),
            ("To", f"<{URI}>"),
            ("Call-ID", "c1"),
            ("CSeq", f"1 {method}"),
        ]
    )
    if authorization:
        headers.add("Authorization", authorization)
    return SipRequest(method, URI, headers)


def authorize(admission: Admission, method: str, sender: str, group: str | None, **kw: object):  # type: ignore[no-untyped-def]
    """Send once, answer the challenge as alice would, return the second outcome."""
    members = kw.get("members", set())
    is_member = lambda g, a: a in members  # noqa: E731
    first = admission.admit(request(method, sender), group, "192.0.2.9", NOW, is_member)
    assert isinstance(first, Answer) and first.status == 401, first
    nonce = first.headers[0][1].split('nonce="')[1].split('"')[0]
    creds = Credentials("alice", REALM, nonce, URI, "", SHA256, "cn", 1, "00000001", None)
    digest = expected_response(ha1(SHA256, "alice", REALM, "pw"), method, creds)
    field = (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
        f'response="{digest}", algorithm=SHA-256, cnonce="cn", qop=auth, nc=00000001'
    )
    return admission.admit(request(method, sender, field), group, "192.0.2.9", NOW, is_member)


@pytest.fixture
def admission() -> Admission:
    guard = Guard(STORE, NonceIssuer(b"k" * 32))
    return Admission(guard, REALM, AccessPolicy(), {"sip:open@example.com": OPEN})


def test_authenticated_member_proceeds_with_its_identity(admission: Admission) -> None:
    outcome = authorize(admission, "MESSAGE", "sip:alice@Example.COM", GROUP)
    assert outcome == Proceed("sip:alice@example.com")


def test_spoofed_from_is_refused(admission: Admission) -> None:
    outcome = authorize(admission, "MESSAGE", "sip:bob@example.com", GROUP)
    assert outcome == Answer(
        403, reason="From Is Not The Authenticated User", failure="from_mismatch"
    )


def test_roster_only_for_members(admission: Admission) -> None:
    outcome = authorize(admission, "SUBSCRIBE", "sip:alice@example.com", GROUP)
    assert isinstance(outcome, Answer) and (outcome.status, outcome.failure) == (403, "not_member")
    member = authorize(
        admission, "SUBSCRIBE", "sip:alice@example.com", GROUP, members={"sip:alice@example.com"}
    )
    assert member == Proceed("sip:alice@example.com")


def test_missing_group_is_challenged_then_proceeds_to_its_404(admission: Admission) -> None:
    assert authorize(admission, "INVITE", "sip:alice@example.com", None) == Proceed(
        "sip:alice@example.com"
    )


def test_missing_group_without_credentials_for_the_realm_is_not_challenged() -> None:
    admission = Admission(Guard(CredentialStore(), NonceIssuer(b"k" * 32)), REALM)
    outcome = admission.admit(
        request("INVITE", "sip:x@h"), None, "192.0.2.9", NOW, lambda g, a: False
    )
    assert outcome == Proceed(None)


def test_open_group_is_not_challenged(admission: Admission) -> None:
    outcome = admission.admit(
        request("MESSAGE", "sip:anyone@elsewhere"), "sip:open@example.com", "192.0.2.9", NOW,
        lambda g, a: False,
    )  # fmt: skip
    assert outcome == Proceed(None)


def test_malformed_authorization_gets_400(admission: Admission) -> None:
    outcome = admission.admit(
        request("INVITE", "sip:alice@example.com", "Digest ,,,"), GROUP, "192.0.2.9", NOW,
        lambda g, a: False,
    )  # fmt: skip
    assert outcome == Answer(400, reason="Bad Authorization", failure="malformed")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, AccessPolicy()),
        ({"policy": "open"}, OPEN),
        (
            {"policy": "allowlist", "allow": ["sip:alice@Example.com"], "algorithms": ["MD5"]},
            AccessPolicy("allowlist", frozenset({"sip:alice@example.com"}), ("MD5",)),
        ),
    ],
)
def test_access_from_the_admin_api(data: dict[str, object], expected: AccessPolicy) -> None:
    assert AccessPolicy.from_json(data) == expected
    assert AccessPolicy.from_json(expected.to_json()) == expected


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"policy": "closed"},
        {"allow": "sip:a@b"},
        {"allow": ["alice"]},
        {"algorithms": "MD5"},
        {"algorithms": ["MD5", "SHA-256"]},
        {"algorithms": [1]},
    ],
)
def test_bad_access_from_the_admin_api(data: object) -> None:
    with pytest.raises(ValueError):
        AccessPolicy.from_json(data)


def test_shard_policy_overrides_the_default(admission: Admission) -> None:
    admission.policies[GROUP] = OPEN
    outcome = admission.admit(
        request("MESSAGE", "sip:x@y"), GROUP, "192.0.2.9", NOW, lambda g, a: False
    )
    assert outcome == Proceed(None)


def guess(admission: Admission, sender: str, source: str) -> Answer | Proceed:
    """One MESSAGE with a wrong password for alice, on a fresh nonce (a guess)."""
    first = admission.admit(request("MESSAGE", sender), GROUP, source, NOW, lambda g, a: False)
    if not (isinstance(first, Answer) and first.status == 401):
        return first  # locked out already
    nonce = first.headers[0][1].split('nonce="')[1].split('"')[0]
    creds = Credentials("alice", REALM, nonce, URI, "", SHA256, "cn", 1, "00000001", None)
    digest = expected_response(ha1(SHA256, "alice", REALM, "guess"), "MESSAGE", creds)
    field = (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
        f'response="{digest}", algorithm=SHA-256, cnonce="cn", qop=auth, nc=00000001'
    )
    return admission.admit(
        request("MESSAGE", sender, field), GROUP, source, NOW, lambda g, a: False
    )


@pytest.mark.parametrize("source_is_shared", [False, True])
def test_a_guesser_behind_a_shared_source_locks_out_only_itself(source_is_shared: bool) -> None:
    """An edge proxy (or the node address SNAT puts on members' packets) carries
    many members: ten guesses through it lock out the guesser's From AOR behind
    it, while alice, through the same address, is still challenged as usual.
    Without `shared_sources` the whole address is locked out (the default for
    a plain source)."""
    guard = Guard(STORE, NonceIssuer(b"k" * 32))
    admission = Admission(guard, REALM, AccessPolicy())
    proxy = "192.0.2.9"
    if source_is_shared:
        admission.shared_sources = frozenset({proxy})
    for _ in range(guard.lockout.max_failures):
        outcome = guess(admission, "sip:mallory@example.com", proxy)
        assert isinstance(outcome, Answer) and outcome.status in (401, 403), outcome
    assert guess(admission, "sip:mallory@example.com", proxy) == Answer(None, failure="locked_out")
    alice = admission.admit(request("MESSAGE", "sip:alice@example.com"), GROUP, proxy, NOW, set)
    assert isinstance(alice, Answer)
    assert alice.status == (401 if source_is_shared else None), alice
