"""Member digest authentication: parsing, nonces, replay window, lockout, the guard's verdicts."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sipfleet.node.auth.credentials import CredentialsError, CredentialStore
from sipfleet.node.auth.digest import (
    MAX_HEADER,
    MD5,
    SHA256,
    Credentials,
    DigestError,
    expected_response,
    ha1,
    parse_credentials,
    parse_params,
)
from sipfleet.node.auth.guard import Accept, Challenge, Drop, Guard, Refuse
from sipfleet.node.auth.lockout import Lockout
from sipfleet.node.auth.nonce import WINDOW, NonceCounts, NonceIssuer, NonceState
from sipfleet.node.auth.policy import OPEN, AccessPolicy

REALM = "example.com"
URI = "sip:team@example.com"
ALICE = "sip:alice@example.com"
NOW = 1_800_000_000.0
STORE = CredentialStore.from_mapping(
    {
        REALM: {
            "alice": {
                SHA256: ha1(SHA256, "alice", REALM, "pw-a"),
                MD5: ha1(MD5, "alice", REALM, "pw-a"),
            },
            "bob": {SHA256: ha1(SHA256, "bob", REALM, "pw-b")},
        }
    }
)


def authorization(
    nonce: str,
    *,
    user: str = "alice",
    password: str = "pw-a",
    algorithm: str = SHA256,
    nc: int = 1,
    method: str = "MESSAGE",
    uri: str = URI,
    realm: str = REALM,
) -> str:
    """What a client computes (RFC 7616 3.4.1), written out independently of the guard."""
    creds = Credentials(user, realm, nonce, uri, "", algorithm, "c0ffee", nc, f"{nc:08x}", None)
    response = expected_response(ha1(algorithm, user, realm, password), method, creds)
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}, cnonce="c0ffee", qop=auth, nc={nc:08x}'
    )


def check(guard: Guard, fields: list[str], *, policy: AccessPolicy | None = None, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "method": "MESSAGE",
        "uri": URI,
        "authorization": fields,
        "realm": REALM,
        "policy": policy or AccessPolicy(),
        "source": "192.0.2.1",
        "now": NOW,
    }
    args.update(kw)
    return guard.check(**args)  # type: ignore[arg-type]


@pytest.fixture
def guard() -> Guard:
    return Guard(STORE, NonceIssuer(b"k" * 32, lifetime=300.0))


def nonce_of(verdict: object) -> str:
    assert isinstance(verdict, Challenge)
    return verdict.www_authenticate[0].split('nonce="')[1].split('"')[0]


# --- parsing -------------------------------------------------------------------------------


def test_known_vector_rfc_2617_style_md5() -> None:
    # RFC 2617 3.5's example, with its MD5 HA1 (Mufasa / Circle Of Life).
    creds = Credentials(
        "Mufasa", "testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "/dir/index.html",
        "", MD5, "0a4f113b", 1, "00000001", None,
    )  # fmt: skip
    digest = expected_response(
        ha1(MD5, "Mufasa", "testrealm@host.com", "Circle Of Life"), "GET", creds
    )
    assert digest == "6629fae49393a05397450978507c4ef1"


def test_known_vector_rfc_7616_sha256() -> None:
    # RFC 7616 3.9.1 (SHA-256 example).
    creds = Credentials(
        "Mufasa", "http-auth@example.org",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "/dir/index.html", "", SHA256,
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", 1, "00000001", None,
    )  # fmt: skip
    digest = expected_response(
        ha1(SHA256, "Mufasa", "http-auth@example.org", "Circle of Life"), "GET", creds
    )
    assert digest == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Basic dXNlcjpwdw==", "malformed"),
        ("Digest", "malformed"),
        ('Digest username="a", username="b"', "malformed"),
        ('Digest username="a', "malformed"),
        ("Digest username=", "malformed"),
        ('Digest username="a" realm="r"', "malformed"),
        ("Digest " + ", ".join(f"p{i}=v" for i in range(20)), "malformed"),
        ("Digest " + "x" * (MAX_HEADER + 1), "malformed"),
        ('Digest username="a", realm="r", nonce="n", uri="u", response="00", qop=auth-int, '
         'nc=00000001, cnonce="c"', "qop"),
        ('Digest username="a", realm="r", nonce="n", uri="u", response="00", qop=auth, '
         'nc=00000001, cnonce="c", algorithm=SHA-256-sess', "algorithm"),
        ('Digest username="a", realm="r", nonce="n", uri="u", response="00", qop=auth, '
         'nc=1, cnonce="c"', "malformed"),
        ('Digest username="a", realm="r", nonce="n", uri="u", response="zz", qop=auth, '
         'nc=00000001, cnonce="c", algorithm=MD5', "malformed"),
        ('Digest realm="r", nonce="n", uri="u", response="00", qop=auth, nc=00000001, '
         'cnonce="c"', "malformed"),
    ],
)  # fmt: skip
def test_bad_authorization_is_refused(value: str, reason: str) -> None:
    with pytest.raises(DigestError) as err:
        parse_credentials(value)
    assert err.value.reason == reason


def test_quoted_escapes_and_case() -> None:
    params = parse_params('digest USERNAME="a\\"b", Realm=r , x="a,b"')
    assert params == {"username": 'a"b', "realm": "r", "x": "a,b"}


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_hostile_text_raises_only_digest_error(text: str) -> None:
    for value in (text, "Digest " + text, 'Digest username="' + text):
        with contextlib.suppress(DigestError):
            parse_credentials(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["username", "realm", "nonce", "uri", "response", "qop",
                                        "nc", "cnonce", "algorithm", "opaque"]),
                       st.text(alphabet='abc09",= \\', max_size=40), max_size=10))  # fmt: skip
def test_hostile_params_raise_only_digest_error(params: dict[str, str]) -> None:
    value = "Digest " + ", ".join(f"{k}={v}" for k, v in params.items())
    try:
        creds = parse_credentials(value)
    except DigestError:
        return
    assert creds.nc >= 0 and len(creds.username) <= MAX_HEADER


# --- nonces and replays ----------------------------------------------------------------------


def test_nonce_lifecycle() -> None:
    issuer = NonceIssuer(b"k" * 32, lifetime=10.0)
    nonce = issuer.issue(REALM, NOW)
    assert issuer.check(REALM, nonce, NOW + 9.9) is NonceState.VALID
    assert issuer.check(REALM, nonce, NOW + 10.1) is NonceState.STALE
    assert issuer.check("other.org", nonce, NOW) is NonceState.INVALID
    assert NonceIssuer(b"j" * 32).check(REALM, nonce, NOW) is NonceState.INVALID
    head, rand, tag = nonce.split(".")
    flipped = "1" if tag[-1] == "0" else "0"
    assert issuer.check(REALM, f"{head}.{rand}.{tag[:-1]}{flipped}", NOW) is NonceState.INVALID
    assert issuer.check(REALM, "zz.zz", NOW) is NonceState.INVALID
    assert issuer.issued_at(nonce) == pytest.approx(NOW, abs=0.001)


def test_nonce_counts_window() -> None:
    counts = NonceCounts(lifetime=10.0)
    assert counts.accept("n", 1, NOW, NOW)
    assert not counts.accept("n", 1, NOW, NOW)
    assert counts.accept("n", 3, NOW, NOW)
    assert counts.accept("n", 2, NOW, NOW)  # reordered, once
    assert not counts.accept("n", 2, NOW, NOW)
    assert counts.accept("n", 3 + WINDOW, NOW, NOW)
    assert not counts.accept("n", 3, NOW, NOW)  # fell out of the window
    assert not counts.accept("m", 0, NOW, NOW)


def test_nonce_counts_bounded_and_eviction_never_reopens_a_replay() -> None:
    counts = NonceCounts(lifetime=100.0, max_nonces=3)
    for i in range(5):
        assert counts.accept(f"n{i}", 1, NOW + i, NOW + i)
    assert len(counts) == 3
    assert not counts.accept("n0", 1, NOW, NOW + 5)  # evicted: refused, not accepted again
    assert not counts.accept("n1", 2, NOW + 1, NOW + 5)
    assert counts.accept("n4", 2, NOW + 4, NOW + 5)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 200)), max_size=300))
def test_nonce_counts_accept_each_pair_once(uses: list[tuple[int, int]]) -> None:
    counts = NonceCounts(lifetime=1000.0, max_nonces=8)
    accepted: set[tuple[int, int]] = set()
    for nonce, nc in uses:
        if counts.accept(str(nonce), nc, NOW + nonce, NOW + 20):
            assert (nonce, nc) not in accepted
            accepted.add((nonce, nc))
        assert len(counts) <= 8


# --- lockout -----------------------------------------------------------------------------------


def test_lockout_after_failures_then_released() -> None:
    lock = Lockout(max_failures=3, window=10.0, duration=60.0, max_sources=2)
    assert not lock.fail("a", NOW)
    assert not lock.fail("a", NOW + 1)
    assert lock.fail("a", NOW + 2)
    assert lock.locked("a", NOW + 30)
    assert not lock.locked("a", NOW + 62.1)
    lock.fail("b", NOW)
    lock.fail("c", NOW)  # the table is full: the unlocked one goes, the locked one stays
    assert len(lock) == 2 and lock.locked("a", NOW + 30)


def test_failures_outside_the_window_do_not_add_up() -> None:
    lock = Lockout(max_failures=2, window=10.0, duration=60.0)
    assert not lock.fail("a", NOW)
    assert not lock.fail("a", NOW + 11)
    lock.succeed("a", NOW + 12)
    assert not lock.fail("a", NOW + 13)


# --- the guard ------------------------------------------------------------------------------------


def test_open_policy_accepts_without_identity(guard: Guard) -> None:
    assert check(guard, [], policy=OPEN) == Accept(None)


def test_challenge_offers_sha256_first_and_md5_only_when_allowed(guard: Guard) -> None:
    first = check(guard, [])
    assert isinstance(first, Challenge) and first.reason is None
    assert [f.split("algorithm=")[1].split(",")[0] for f in first.www_authenticate] == [SHA256]
    both = check(guard, [], policy=AccessPolicy(algorithms=(SHA256, MD5)))
    assert isinstance(both, Challenge)
    assert ["SHA-256" in f for f in both.www_authenticate] == [True, False]
    assert all('qop="auth"' in f and 'realm="example.com"' in f for f in both.www_authenticate)


@pytest.mark.parametrize(
    ("kwargs", "policy", "expected"),
    [
        ({}, AccessPolicy(), Accept("sip:alice@example.com")),
        ({"algorithm": MD5}, AccessPolicy(algorithms=(SHA256, MD5)), Accept(ALICE)),
        ({"algorithm": MD5}, AccessPolicy(), "algorithm"),
        ({"password": "wrong"}, AccessPolicy(), "bad_response"),
        ({"user": "mallory"}, AccessPolicy(), "unknown_user"),
        ({"user": "bob", "password": "pw-b"}, AccessPolicy(mode="allowlist",
         allow=frozenset({"sip:alice@example.com"})), Refuse(403, "not_allowed")),
        ({}, AccessPolicy(mode="allowlist", allow=frozenset({"sip:alice@example.com"})),
         Accept("sip:alice@example.com")),
        ({"uri": "sip:other@example.com"}, AccessPolicy(), Refuse(400, "uri_mismatch")),
        ({"method": "INVITE"}, AccessPolicy(), "bad_response"),
        ({"realm": "other.org"}, AccessPolicy(), None),
    ],
)  # fmt: skip
def test_verdicts(
    guard: Guard, kwargs: dict[str, object], policy: AccessPolicy, expected: object
) -> None:
    nonce = nonce_of(check(guard, [], policy=policy))
    verdict = check(guard, [authorization(nonce, **kwargs)], policy=policy)  # type: ignore[arg-type]
    if isinstance(expected, str | None):
        assert isinstance(verdict, Challenge) and verdict.reason == expected
        assert "stale" not in verdict.www_authenticate[0]
    else:
        assert verdict == expected


def test_replayed_nonce_count_is_challenged_and_the_next_count_accepted(guard: Guard) -> None:
    nonce = nonce_of(check(guard, []))
    field = authorization(nonce)
    assert isinstance(check(guard, [field]), Accept)
    replay = check(guard, [field])
    assert isinstance(replay, Challenge) and replay.reason == "replayed"
    assert isinstance(check(guard, [authorization(nonce, nc=2)]), Accept)


def test_expired_nonce_gets_stale_only_with_the_right_password(guard: Guard) -> None:
    nonce = nonce_of(check(guard, []))
    later = NOW + 301
    right = check(guard, [authorization(nonce)], now=later)
    assert isinstance(right, Challenge) and right.reason == "stale_nonce"
    assert all(f.endswith("stale=true") for f in right.www_authenticate)
    wrong = check(guard, [authorization(nonce, password="x")], now=later)
    assert isinstance(wrong, Challenge) and wrong.reason == "bad_response"
    assert "stale" not in wrong.www_authenticate[0]


def test_forged_nonce_and_malformed_field(guard: Guard) -> None:
    forged = check(guard, [authorization("0.0000000000000000.00")])
    assert isinstance(forged, Challenge) and forged.reason == "bad_nonce"
    assert check(guard, ["Digest nonsense"]) == Refuse(400, "malformed")


def test_repeated_failures_lock_the_source_out() -> None:
    guard = Guard(STORE, NonceIssuer(b"k" * 32), lockout=Lockout(max_failures=3))
    nonce = nonce_of(check(guard, []))
    verdicts = [check(guard, [authorization(nonce, password=f"guess{i}")]) for i in range(3)]
    assert [type(v) for v in verdicts] == [Challenge, Challenge, Challenge]
    assert guard.lockout.locked("192.0.2.1", NOW)
    # Even the right password is dropped while locked; another source is not affected.
    assert isinstance(check(guard, [authorization(nonce)]), Drop)
    assert isinstance(check(guard, [authorization(nonce)], source="192.0.2.2"), Accept)


def test_missing_and_protected_groups_answer_alike(guard: Guard) -> None:
    # The server answers a missing group with the secure default policy: same 401 shape.
    missing, protected = check(guard, []), check(guard, [], policy=AccessPolicy())
    assert isinstance(missing, Challenge) and isinstance(protected, Challenge)
    strip = [f.split("nonce=")[0] for f in missing.www_authenticate]
    assert strip == [f.split("nonce=")[0] for f in protected.www_authenticate]
    assert guard.protects("EXAMPLE.com") and not guard.protects("other.org")


# --- credentials files ---


def test_credentials_file_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "creds.yaml"
    path.write_text(
        f"Example.COM:\n  alice:\n    SHA-256: {ha1(SHA256, 'alice', REALM, 'p').upper()}\n"
    )
    store = CredentialStore.load(path)
    assert store.ha1(REALM, "alice", SHA256) == ha1(SHA256, "alice", REALM, "p")
    assert store.ha1(REALM, "alice", MD5) is None


@pytest.mark.parametrize(
    "data",
    [[1], {"r": []}, {"r": {"u": {"SHA-1": "00"}}}, {"r": {"u": {SHA256: "xyz"}}}, {"r": {"": {}}}],
)
def test_bad_credentials_are_refused(data: object) -> None:
    with pytest.raises(CredentialsError):
        CredentialStore.from_mapping(data)


@pytest.mark.parametrize(
    "kwargs",
    [{"algorithms": ()}, {"algorithms": (MD5, SHA256)}, {"algorithms": ("SHA-1",)},
     {"algorithms": (SHA256, SHA256)}, {"mode": "closed"}],
)  # fmt: skip
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AccessPolicy(**kwargs)  # type: ignore[arg-type]


def test_md5_only_policy_challenges_md5_alone(guard: Guard) -> None:
    policy = AccessPolicy(algorithms=(MD5,))
    first = check(guard, [], policy=policy)
    assert isinstance(first, Challenge) and len(first.www_authenticate) == 1
    assert "algorithm=MD5" in first.www_authenticate[0]
    sha = check(guard, [authorization(nonce_of(first))], policy=policy)
    assert isinstance(sha, Challenge) and sha.reason == "algorithm"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=200),
            st.builds(
                lambda n, r, u: (
                    f'Digest username="{u}", realm="{r}", nonce="{n}", uri="{URI}", '
                    f'response="{"0" * 64}", qop=auth, nc=00000001, cnonce="c", algorithm=SHA-256'
                ),
                st.text(alphabet="0123456789abcdef.", max_size=60),
                st.sampled_from([REALM, "EXAMPLE.COM", "other"]),
                st.text(alphabet="abc\u00e9", max_size=8),
            ),
        ),
        max_size=6,
    )
)
def test_guard_never_raises_on_hostile_fields(fields: list[str]) -> None:
    guard = Guard(STORE, NonceIssuer(b"k" * 32), lockout=Lockout(max_failures=1000))
    verdict = check(guard, fields)
    assert isinstance(verdict, Challenge | Refuse | Accept)
    assert not isinstance(verdict, Accept)  # no field here carries a valid response
    assert len(guard.counts) <= 1 and len(guard.lockout) <= 1
