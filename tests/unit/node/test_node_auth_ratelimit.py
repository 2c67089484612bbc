"""Server-to-server HMAC authentication and the per-source rate limiter."""

from __future__ import annotations

import pytest
from sipfleet.node.ratelimit import RateLimiter
from sipfleet.node.s2s import is_s2s, sign_request, verify_request
from sipfleet.node.s2s_auth import AuthError, Verifier, sign
from sipfleet.node.sip import Headers, SipRequest, parse_message

KEY = b"shared-token"
PARTS = [b"MESSAGE", b"sip:c@h", b"body"]


def test_sign_and_verify() -> None:
    Verifier(KEY).verify(sign(KEY, PARTS, 1000.0), PARTS, 1001.0)


@pytest.mark.parametrize(
    ("header", "parts", "now", "reason"),
    [
        (None, PARTS, 1000.0, "missing"),
        ("ts=1000;nonce=ab", PARTS, 1000.0, "malformed"),
        (sign(KEY, PARTS, 1000.0), [b"MESSAGE", b"sip:c@h", b"other"], 1000.0, "bad signature"),
        (sign(b"wrong key", PARTS, 1000.0), PARTS, 1000.0, "bad signature"),
        (sign(KEY, PARTS, 1000.0), PARTS, 1031.0, "stale"),
        (sign(KEY, PARTS, 1000.0), PARTS, 969.0, "stale"),
    ],
)
def test_refused(header: str | None, parts: list[bytes], now: float, reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        Verifier(KEY).verify(header, parts, now)


def test_replay_refused() -> None:
    verifier = Verifier(KEY)
    header = sign(KEY, PARTS, 1000.0)
    verifier.verify(header, PARTS, 1000.0)
    with pytest.raises(AuthError, match="replayed"):
        verifier.verify(header, PARTS, 1001.0)


def _request() -> SipRequest:
    return SipRequest(
        "REFER",
        "sip:c-n1@127.0.0.11:5060",
        Headers(
            [
                ("Via", "SIP/2.0/TCP 127.0.0.10:5060;branch=z9hG4bKabc"),
                ("Max-Forwards", "70"),
                ("Call-ID", "x"),
                ("CSeq", "1 REFER"),
                ("Refer-To", "<sip:m@127.0.0.1>"),
                ("X-Sipfleet-Member", "<sip:m@example.com>"),
            ]
        ),
        b"",
    )


def test_signed_request_survives_the_wire() -> None:
    request = _request()
    assert is_s2s(request)
    sign_request(request, KEY, 1000.0)
    received = parse_message(request.to_bytes())
    assert isinstance(received, SipRequest)
    received.headers.set("Via", "SIP/2.0/TCP 127.0.0.10:5060;branch=z9hG4bKabc;received=x")
    received.headers.set("Max-Forwards", "69")
    verify_request(received, Verifier(KEY), 1000.0)
    assert not is_s2s(SipRequest("MESSAGE", "sip:c@h", Headers([("Call-ID", "x")])))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Refer-To", "<sip:evil@127.0.0.1>"),
        ("X-Sipfleet-Member", "<sip:other@example.com>"),
        ("Call-ID", "y"),
        ("CSeq", "2 REFER"),
    ],
)
def test_tampering_with_any_signed_header_is_caught(name: str, value: str) -> None:
    request = _request()
    sign_request(request, KEY, 1000.0)
    request.headers.set(name, value)
    with pytest.raises(AuthError, match="bad signature"):
        verify_request(request, Verifier(KEY), 1000.0)


def test_rate_limiter_burst_then_refill() -> None:
    limiter = RateLimiter(rate=10.0, burst=5.0)
    assert [limiter.allow("a", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("b", 0.0)  # another source is not affected
    assert limiter.allow("a", 0.1)  # one token refilled after 100 ms
    assert not limiter.allow("a", 0.1)


def test_rate_limiter_table_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1.0, max_sources=3)
    for i in range(10):
        limiter.allow(f"s{i}", 0.0)
    assert len(limiter) == 3
    assert not limiter.allow("s9", 0.0)  # recent sources are still tracked


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate must be"):
        RateLimiter(rate=0.0, burst=1.0)
