"""SDP offer/answer (RFC 3264) with the offers real phones send.

PJSIP_OFFER and BARESIP_OFFER were captured from pjsua2-python 2.15.1 and
baresip 1.0.0 (Debian) calling a UDP socket with their default settings (the
c=/o= address is what they picked on this host). LINPHONE_OFFER is written
from liblinphone's default audio codecs and attributes (opus, speex, G.711,
G.729 annexb, three telephone-event rates, rtcp-fb and rtcp-xr), not captured:
linphonec would not open a UDP listening point here. The real linphone-daemon
joins in tests/integration/ua.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sipfleet.node.sdp import (
    STATIC_PAYLOADS,
    Media,
    MediaSession,
    SdpError,
    SessionDescription,
    answer_streams,
    check_answer,
    parse_sdp,
)


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


PJSIP_OFFER = sdp(
    "v=0",
    "o=- 4005054095 4005054095 IN IP4 192.0.2.2",
    "s=pjmedia",
    "b=AS:84",
    "t=0 0",
    "a=X-nat:0",
    "m=audio 4000 RTP/AVP 96 97 98 99 3 0 8 9 120 121 122",
    "c=IN IP4 192.0.2.2",
    "b=TIAS:64000",
    "a=rtcp:4001 IN IP4 192.0.2.2",
    "a=sendrecv",
    "a=rtpmap:96 speex/16000",
    "a=rtpmap:97 speex/8000",
    "a=rtpmap:98 speex/32000",
    "a=rtpmap:99 iLBC/8000",
    "a=fmtp:99 mode=30",
    "a=rtpmap:3 GSM/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:120 telephone-event/16000",
    "a=fmtp:120 0-16",
    "a=rtpmap:121 telephone-event/8000",
    "a=fmtp:121 0-16",
    "a=rtpmap:122 telephone-event/32000",
    "a=fmtp:122 0-16",
    "a=ssrc:1087102020 cname:38675c39725e96b5",
)

BARESIP_OFFER = sdp(
    "v=0",
    "o=- 3206405491 1420866197 IN IP4 192.0.2.2",
    "s=-",
    "c=IN IP4 192.0.2.2",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 20122 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "a=label:1",
    "a=rtcp-rsize",
    "a=ssrc:2457875127 cname:sip:alice@127.0.0.1",
    "a=minptime:20",
    "a=ptime:20",
)

LINPHONE_OFFER = sdp(
    "v=0",
    "o=alice 1817 2954 IN IP4 127.0.0.1",
    "s=Talk",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
    "a=record:off",
    "m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:97 speex/16000",
    "a=fmtp:97 vbr=on",
    "a=rtpmap:98 speex/8000",
    "a=fmtp:98 vbr=on",
    "a=fmtp:18 annexb=yes",
    "a=rtpmap:101 telephone-event/48000",
    "a=rtpmap:99 telephone-event/16000",
    "a=rtpmap:100 telephone-event/8000",
    "a=rtcp-fb:* trr-int 1000",
    "a=rtcp-fb:* ccm tmmbr",
)

# The input: a first format that is dynamic.
OPUS_FIRST = sdp(
    "v=0",
    "o=- 1 1 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 4000 RTP/AVP 96 0 8",
    "a=rtpmap:96 opus/48000/2",
)


def answer(offer: bytes, host: str = "10.0.0.5") -> SessionDescription:
    body = MediaSession().answer(offer, host)
    parsed = parse_sdp(body)
    check_answer(parse_sdp(offer), parsed)
    return parsed


@pytest.mark.parametrize(
    ("offer", "formats", "rtpmaps", "fmtps"),
    [
        (
            PJSIP_OFFER,
            ("96", "120"),
            ["rtpmap:96 speex/16000", "rtpmap:120 telephone-event/16000"],
            ["fmtp:120 0-16"],
        ),
        (
            BARESIP_OFFER,
            ("0", "101"),
            ["rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000"],
            ["fmtp:101 0-15"],
        ),
        (
            LINPHONE_OFFER,
            ("96", "101"),
            ["rtpmap:96 opus/48000/2", "rtpmap:101 telephone-event/48000"],
            ["fmtp:96 useinbandfec=1"],
        ),
        (OPUS_FIRST, ("96",), ["rtpmap:96 opus/48000/2"], []),
    ],
    ids=["pjsip", "baresip", "linphone", "opus-first"],
)
def test_real_offers_get_a_codec_with_its_rtpmap_and_fmtp(
    offer: bytes, formats: tuple[str, ...], rtpmaps: list[str], fmtps: list[str]
) -> None:
    (media,) = answer(offer).media
    assert media.kind == "audio" and media.proto == "RTP/AVP"
    assert media.port == 9 and media.formats == formats
    assert [a for a in media.attributes if a.startswith("rtpmap:")] == rtpmaps
    assert [a for a in media.attributes if a.startswith("fmtp:")] == fmtps
    assert media.direction == "inactive"


def test_answer_header_lines() -> None:
    body = MediaSession(session_id=42).answer(BARESIP_OFFER, "10.0.0.5").decode()
    lines = body.split("\r\n")
    assert lines[:5] == [
        "v=0",
        "o=sipfleet 42 1 IN IP4 10.0.0.5",
        "s=sipfleet",
        "c=IN IP4 10.0.0.5",
        "t=0 0",
    ]
    assert body.endswith("a=inactive\r\n")


def test_ipv6_address_says_ip6() -> None:
    parsed = parse_sdp(MediaSession(session_id=7).answer(BARESIP_OFFER, "fd00::5"))
    assert parsed.connection == "IN IP6 fd00::5"
    assert parsed.origin == "sipfleet 7 1 IN IP6 fd00::5"


def test_streams_that_cannot_be_answered_are_rejected_in_place() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/SAVP 0",
        "a=crypto:1 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm",
        "m=video 0 RTP/AVP 31",
        "m=message 2855 TCP/MSRP *",
        "a=path:msrp://127.0.0.1:2855/abc;tcp",
        "m=audio 4002 RTP/AVP 101 13",
        "a=rtpmap:101 telephone-event/8000",
        "m=audio 4004 RTP/AVP 97",
        "m=video 4006 RTP/AVPF 96 31",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack",
    )
    media = answer(offer).media
    assert [(m.kind, m.port, m.proto) for m in media] == [
        ("audio", 0, "RTP/SAVP"),  # SRTP with only a crypto suite the focus does not know
        ("video", 0, "RTP/AVP"),  # disabled in the offer
        ("message", 0, "TCP/MSRP"),  # not RTP
        ("audio", 0, "RTP/AVP"),  # telephone-event and comfort noise alone are no codec
        ("audio", 0, "RTP/AVP"),  # dynamic type without rtpmap: undefined
        ("video", 9, "RTP/AVPF"),
    ]
    assert media[2].formats == ("*",)  # a rejected stream keeps the offer's formats
    assert media[5].formats == ("96",) and "rtpmap:96 VP8/90000" in media[5].attributes
    assert all(m.attributes == () for m in media[:5])


def test_sdes_srtp_is_answered_with_one_crypto_line() -> None:
    """RFC 4568 7.1.2: the answer picks one offered crypto attribute (same tag and
    suite) and gives its own key; DTLS-SRTP (no certificate here) is rejected."""
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/SAVP 0 101",
        "a=rtpmap:101 telephone-event/8000",
        "a=crypto:1 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm",
        "a=crypto:2 AES_CM_128_HMAC_SHA1_80 "
        "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
        "a=crypto:3 AES_256_CM_HMAC_SHA1_80 inline:"
        "xWl9Zx0HazIpGsUC1VdjjIoFuqdXDsnmmZjYm2m8hYFTzLdYGBiAuvZBHkXyyQ==",
        "m=audio 4002 UDP/TLS/RTP/SAVPF 0",
        "a=fingerprint:sha-256 AB:CD",
        "a=setup:actpass",
    )
    session = MediaSession()
    reply = parse_sdp(session.answer(offer, "10.0.0.5"))
    check_answer(parse_sdp(offer), reply)
    first, dtls = reply.media
    assert first.port == 9 and dtls.port == 0
    (crypto,) = [a for a in first.attributes if a.startswith("crypto:")]
    tag, suite, key = crypto.removeprefix("crypto:").split()
    assert (tag, suite) == ("2", "AES_CM_128_HMAC_SHA1_80")
    assert base64.b64decode(key.removeprefix("inline:")) == session.srtp_key[:30]
    assert MediaSession().srtp_key != session.srtp_key  # a key per dialog


def test_timing_is_copied_from_the_offer() -> None:
    offer = BARESIP_OFFER.replace(b"t=0 0", b"t=3034423619 3042462419")
    assert answer(offer).timing == "3034423619 3042462419"


def test_session_id_stays_and_version_bumps_only_on_change() -> None:
    session = MediaSession()
    first = parse_sdp(session.answer(BARESIP_OFFER, "10.0.0.5")).origin.split()
    again = parse_sdp(session.answer(BARESIP_OFFER, "10.0.0.5")).origin.split()
    changed = parse_sdp(session.answer(PJSIP_OFFER, "10.0.0.5")).origin.split()
    assert first[1] == again[1] == changed[1] == str(session.session_id)
    assert (int(first[2]), int(again[2]), int(changed[2])) == (1, 1, 2)
    assert MediaSession().session_id != session.session_id


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"hello",
        sdp("v=1", "o=- 1 1 IN IP4 h", "s=-", "t=0 0"),
        sdp("v=0", "s=-", "t=0 0"),
        sdp("v=0", "o=- 1 1 IN IP4 h", "t=0 0"),
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-"),
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio x RTP/AVP 0"),
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 70000 RTP/AVP 0"),
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 4000 RTP/AVP"),
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 4000 RTP/AVP opus"),
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN IP9 h", "t=0 0"),
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "garbage"),
        b"v=0\r\no=- 1 1 IN IP4 h\r\ns=\xff\r\nt=0 0\r\n",
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", *["m=audio 1 RTP/AVP 0"] * 65),
    ],
)
def test_malformed_offers_raise(bad: bytes) -> None:
    with pytest.raises(SdpError):
        MediaSession().answer(bad, "10.0.0.5")


def test_late_offer_and_the_answer_in_the_ack() -> None:
    session = MediaSession()
    offer = parse_sdp(session.offer("10.0.0.5"))
    (media,) = offer.media
    assert media.formats == ("0", "8", "101") and media.direction == "inactive"
    assert "rtpmap:101 telephone-event/8000" in media.attributes
    phone_answer = sdp(
        "v=0",
        "o=- 9 9 IN IP4 192.0.2.2",
        "s=pjmedia",
        "c=IN IP4 192.0.2.2",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=inactive",
    )
    session.accept_answer(phone_answer)
    assert session.pending is None
    with pytest.raises(SdpError, match="no offer"):
        session.accept_answer(phone_answer)  # a second answer to the same offer


@pytest.mark.parametrize(
    ("replace_from", "replace_to", "reason"),
    [
        (b"t=0 0", b"t=1 2", "t="),
        (b"m=audio 4000 RTP/AVP 0 101", b"m=video 4000 RTP/AVP 0 101", "video"),
        (b"m=audio 4000 RTP/AVP 0 101", b"m=audio 4000 RTP/SAVP 0 101", "RTP/SAVP"),
        (b"m=audio 4000 RTP/AVP 0 101", b"m=audio 4000 RTP/AVP 18", "no format"),
        (b"m=audio 4000 RTP/AVP 0 101", b"m=audio 4000 RTP/AVP 0 96", "96 has no rtpmap"),
        (b"a=inactive\r\n", b"a=inactive\r\nm=audio 0 RTP/AVP 0\r\n", "2 m= lines"),
    ],
)
def test_bad_answers_in_the_ack_raise(replace_from: bytes, replace_to: bytes, reason: str) -> None:
    session = MediaSession()
    session.offer("10.0.0.5")
    good = sdp(
        "v=0",
        "o=- 9 9 IN IP4 192.0.2.2",
        "s=-",
        "c=IN IP4 192.0.2.2",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0 101",
        "a=rtpmap:101 telephone-event/8000",
        "a=inactive",
    )
    assert replace_from in good
    with pytest.raises(SdpError, match=reason):
        session.accept_answer(good.replace(replace_from, replace_to))
    assert session.pending is None


def test_answer_to_a_disabled_stream_must_stay_disabled() -> None:
    offer = parse_sdp(sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 0 RTP/AVP 0"))
    reply = parse_sdp(sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 5 RTP/AVP 0"))
    with pytest.raises(SdpError, match="disabled"):
        check_answer(offer, reply)


# ---- property: every valid offer gets a valid answer ------------------------------------

CODECS = ["opus/48000/2", "speex/16000", "iLBC/8000", "AMR/8000", "VP8/90000", "H264/90000"]
AUX = ["telephone-event/8000", "telephone-event/48000", "CN/8000", "red/48000"]


@st.composite
def media_sections(draw: st.DrawFn) -> Media:
    kind = draw(st.sampled_from(["audio", "video", "text", "application", "message"]))
    proto = draw(st.sampled_from(["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"]))
    port = draw(st.sampled_from([0, 9, 4000, 65535]))
    statics = draw(st.lists(st.sampled_from(sorted(STATIC_PAYLOADS)), max_size=4, unique=True))
    dynamic = draw(st.lists(st.integers(96, 127).map(str), max_size=4, unique=True))
    formats = tuple(dict.fromkeys(draw(st.permutations(statics + dynamic)))) or ("0",)
    attributes: list[str] = []
    for fmt in dynamic:
        if draw(st.booleans()):  # some dynamic types are left undefined
            attributes.append(f"rtpmap:{fmt} {draw(st.sampled_from(CODECS + AUX))}")
        if draw(st.booleans()):
            attributes.append(f"fmtp:{fmt} x=1")
    if draw(st.booleans()):
        suite = draw(st.sampled_from(["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM", "F8_128"]))
        attributes.append(f"crypto:{draw(st.integers(1, 9))} {suite} inline:QUJD")
    attributes.append(draw(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])))
    return Media(kind, port, proto, formats, tuple(attributes))


@st.composite
def offers(draw: st.DrawFn) -> bytes:
    media = tuple(draw(st.lists(media_sections(), min_size=1, max_size=5)))
    host = draw(st.sampled_from(["192.0.2.2", "2001:db8::2"]))
    timing = draw(st.sampled_from(["0 0", "3034423619 3042462419"]))
    conn = f"IN {'IP6' if ':' in host else 'IP4'} {host}"
    return SessionDescription(f"- 1 1 {conn}", "-", timing, conn, (), media).to_bytes()


@settings(max_examples=300, deadline=None)
@given(offer=offers(), host=st.sampled_from(["10.0.0.5", "fd00::5"]))
def test_every_valid_offer_gets_a_valid_answer(offer: bytes, host: str) -> None:
    parsed_offer = parse_sdp(offer)
    session = MediaSession()
    reply = parse_sdp(session.answer(offer, host))  # the answer parses
    check_answer(parsed_offer, reply)  # and is an answer to the offer (RFC 3264 6)
    assert reply.media == answer_streams(parsed_offer, session.srtp_key)
    for off, ans in zip(parsed_offer.media, reply.media, strict=True):
        if ans.port == 0:
            assert ans.formats == off.formats
            continue
        assert off.port != 0 and off.proto in ("RTP/AVP", "RTP/AVPF", "RTP/SAVP")
        cryptos = [a for a in ans.attributes if a.startswith("crypto:")]
        if off.proto == "RTP/SAVP":  # one crypto line answering a known offered suite
            (crypto,) = cryptos
            assert off.crypto() == tuple(crypto.removeprefix("crypto:").split()[:2])
        else:
            assert not cryptos
        assert set(ans.formats) <= set(off.formats)
        for fmt in ans.formats:  # same payload numbers, each defined by an rtpmap line
            assert f"rtpmap:{fmt} {off.rtpmap(fmt)}" in ans.attributes
            assert set(off.fmtp(fmt)) <= set(ans.attributes)
        assert ans.direction == "inactive"


@settings(max_examples=400, deadline=None)
@given(
    offer=st.sampled_from([PJSIP_OFFER, BARESIP_OFFER, LINPHONE_OFFER, OPUS_FIRST]),
    cuts=st.lists(st.tuples(st.integers(0, 700), st.binary(max_size=12)), max_size=4),
)
def test_mangled_offers_get_an_answer_or_sdp_error(
    offer: bytes, cuts: list[tuple[int, bytes]]
) -> None:
    """Bad input is refused (488 at the INVITE) and never raises anything else."""
    for at, junk in cuts:
        offer = offer[:at] + junk + offer[at + len(junk) :]
    try:
        body = MediaSession().answer(offer, "10.0.0.5")
    except SdpError:
        return
    check_answer(parse_sdp(offer), parse_sdp(body))
