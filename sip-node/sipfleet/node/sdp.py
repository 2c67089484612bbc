"""SDP offer/answer (RFC 3264) for a signalling-only conference focus.

The focus carries no media: every stream it accepts is answered `a=inactive`
(RFC 3264 6.1), so no phone sends it audio and none waits for any. Pure:
bytes in, bytes out, no I/O and no clock.

- `parse_sdp` / `SessionDescription.to_bytes`: RFC 4566 session descriptions.
- `answer_streams`: the answer's m= lines for an offer (RFC 3264 6): same
  number and order; each RTP stream keeps one codec of the offer (the
  offerer's first) with its `a=rtpmap`/`a=fmtp` lines, plus the offer's
  `telephone-event` formats of that clock rate (RFC 4733 7.1.1), and an
  a=crypto line for RTP/SAVP(F) (RFC 4568); a stream the focus cannot answer
  (port 0 in the offer, not RTP, DTLS-SRTP, no usable codec or crypto suite)
  is rejected with port 0.
- `check_answer`: is an SDP a valid answer to an offer (RFC 3264 6)?
- `MediaSession`: one dialog's SDP state. Its `o=` session id is fixed for
  the dialog and the version grows only when the description changes
  (RFC 3264 8); it answers offers, makes the offer of a 2xx to an INVITE
  without SDP and checks the answer in the ACK (RFC 3264 5, RFC 3261 13.2.1).
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from dataclasses import dataclass, field, replace

SDP_TYPE = "application/sdp"
DISCARD_PORT = 9  # RFC 863; an inactive stream's port is never sent to
RTP_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF"})
SRTP_PROFILES = frozenset({"RTP/SAVP", "RTP/SAVPF"})  # keyed by a=crypto (RFC 4568)
# SDES crypto suites (RFC 4568 6.2, RFC 6188, RFC 7714): master key + salt length, bytes.
SRTP_KEY_LENGTHS = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
    "AES_256_CM_HMAC_SHA1_80": 46,
    "AES_256_CM_HMAC_SHA1_32": 46,
    "AEAD_AES_128_GCM": 28,
    "AEAD_AES_256_GCM": 44,
}
# Formats that are not codecs: they only make sense beside one (RFC 4733, 3389, 2198, 5109, 4588).
AUXILIARY = frozenset({"telephone-event", "cn", "red", "ulpfec", "flexfec", "rtx"})
# RFC 3551 tables 4 and 5: static payload types, as an rtpmap value.
STATIC_PAYLOADS = {
    "0": "PCMU/8000",
    "3": "GSM/8000",
    "4": "G723/8000",
    "5": "DVI4/8000",
    "6": "DVI4/16000",
    "7": "LPC/8000",
    "8": "PCMA/8000",
    "9": "G722/8000",
    "10": "L16/44100/2",
    "11": "L16/44100",
    "12": "QCELP/8000",
    "13": "CN/8000",
    "14": "MPA/90000",
    "15": "G728/8000",
    "16": "DVI4/11025",
    "17": "DVI4/22050",
    "18": "G729/8000",
    "25": "CelB/90000",
    "26": "JPEG/90000",
    "28": "nv/90000",
    "31": "H261/90000",
    "32": "MPV/90000",
    "33": "MP2T/90000",
    "34": "H263/90000",
}
DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
MAX_MEDIA = 64  # m= lines per description; more is refused (bounds the answer)


class SdpError(ValueError):
    """An SDP body is malformed (RFC 4566) or breaks an offer/answer rule (RFC 3264)."""


@dataclass(frozen=True, slots=True)
class Media:
    """One m= section (RFC 4566 5.14): `kind` is audio/video/..., `formats` the fmt
    list, `attributes` the a= values in order (without `a=`), `connection` a
    media-level c= value."""

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    attributes: tuple[str, ...] = ()
    connection: str | None = None
    port_count: int | None = None
    other: tuple[str, ...] = ()  # i=, b=, k= lines, kept verbatim as "x=value"

    @property
    def rtp(self) -> bool:
        """Is the transport one the focus answers: RTP/AVP(F), or RTP/SAVP(F) (which
        also needs a known a=crypto suite, see `crypto`)?"""
        return self.proto.upper() in RTP_PROFILES | SRTP_PROFILES

    def crypto(self) -> tuple[str, str] | None:
        """(tag, suite) of the first a=crypto line with a suite the focus knows (RFC 4568)."""
        for attr in self.attributes:
            if attr.startswith("crypto:"):
                tag, suite, *_ = (attr[len("crypto:") :] + " - -").split()
                if tag.isdigit() and suite in SRTP_KEY_LENGTHS:
                    return tag, suite
        return None

    def rtpmap(self, fmt: str) -> str | None:
        """The rtpmap value of payload type `fmt` ("opus/48000/2"): its a=rtpmap, or the
        RFC 3551 static assignment; None when the type is undefined."""
        prefix = f"rtpmap:{fmt} "
        for attr in self.attributes:
            if attr.startswith(prefix):
                return attr[len(prefix) :].strip()
        return STATIC_PAYLOADS.get(fmt)

    def fmtp(self, fmt: str) -> tuple[str, ...]:
        """The `a=fmtp` attributes of payload type `fmt`, whole (`fmtp:96 useinbandfec=1`)."""
        prefix = f"fmtp:{fmt} "
        return tuple(a for a in self.attributes if a.startswith(prefix))

    @property
    def direction(self) -> str:
        """The media-level direction: sendrecv/sendonly/recvonly/inactive, sendrecv
        when unsaid (RFC 3264 5.1)."""
        for attr in self.attributes:
            if attr in DIRECTIONS:
                return attr
        return "sendrecv"

    def lines(self) -> list[str]:
        """The section as SDP lines, m= first (RFC 4566 5 order: m, i, c, b, k, a)."""
        port = f"{self.port}/{self.port_count}" if self.port_count else str(self.port)
        out = [f"m={self.kind} {port} {self.proto} {' '.join(self.formats)}"]
        out += [o for o in self.other if o.startswith("i=")]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [o for o in self.other if not o.startswith("i=")]
        out += [f"a={a}" for a in self.attributes]
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """An SDP session description (RFC 4566): the session-level lines and the media."""

    origin: str
    name: str
    timing: str
    connection: str | None = None
    attributes: tuple[str, ...] = ()
    media: tuple[Media, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialise with CRLF line ends (RFC 4566 5)."""
        lines = ["v=0", f"o={self.origin}", f"s={self.name}"]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.append(f"t={self.timing}")
        lines += [f"a={a}" for a in self.attributes]
        for media in self.media:
            lines += media.lines()
        return ("\r\n".join(lines) + "\r\n").encode()


def _check_connection(value: str) -> None:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value[:80]!r}: want 'IN IP4|IP6 <address>'")


def _parse_media(value: str) -> Media:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"bad m= line {value[:80]!r}: want '<media> <port> <proto> <fmt> ...'")
    kind, port_text, proto, *formats = parts
    port_str, slash, count_str = port_text.partition("/")
    try:
        port = int(port_str)
        count = int(count_str) if slash else None
    except ValueError:
        raise SdpError(f"bad port {port_text!r} in m= line") from None
    if not 0 <= port <= 65535 or (count is not None and count < 1):
        raise SdpError(f"port {port_text!r} in m= line is out of range")
    media = Media(kind, port, proto, tuple(formats), port_count=count)
    if "RTP/" in proto.upper() and not all(f.isdigit() and int(f) <= 127 for f in formats):
        raise SdpError(f"RTP payload types must be 0..127, got {' '.join(formats)[:80]!r}")
    return media


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body (RFC 4566). CRLF or LF line ends are accepted.

    Raises SdpError when v=0, o= (6 fields), s=, t= or an m= line is missing or
    malformed, when a c= line is malformed, or when there are more than
    MAX_MEDIA m= lines.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    session: dict[str, str] = {}
    session_attrs: list[str] = []
    media: list[Media] = []
    attrs: list[str] = []
    other: list[str] = []

    def close_media() -> None:
        if media:
            media[-1] = replace(media[-1], attributes=tuple(attrs), other=tuple(other))
        attrs.clear()
        other.clear()

    for line in lines[1:]:
        kind, eq, value = line.partition("=")
        if len(kind) != 1 or not eq:
            raise SdpError(f"bad SDP line {line[:80]!r}: want '<type>=<value>'")
        if kind == "m":
            close_media()
            if len(media) == MAX_MEDIA:
                raise SdpError(f"more than {MAX_MEDIA} m= lines")
            media.append(_parse_media(value))
        elif kind == "c":
            _check_connection(value)
            if media:
                media[-1] = replace(media[-1], connection=value)
            else:
                session["c"] = value
        elif kind == "a":
            (attrs if media else session_attrs).append(value)
        elif media:
            other.append(line)
        else:
            session.setdefault(kind, value)
    close_media()
    origin = session.get("o", "").split()
    if len(origin) != 6 or origin[3] != "IN":
        raise SdpError("SDP needs o=<user> <sess-id> <sess-version> IN <addrtype> <address>")
    for required in ("s", "t"):
        if required not in session:
            raise SdpError(f"SDP has no {required}= line")
    return SessionDescription(
        session["o"],
        session["s"],
        session["t"],
        session.get("c"),
        tuple(session_attrs),
        tuple(media),
    )


def address_type(host: str) -> str:
    """`IP6` for an IPv6 address, else `IP4` (the addrtype of c= and o=, RFC 4566 5.7)."""
    try:
        return "IP6" if ipaddress.ip_address(host).version == 6 else "IP4"
    except ValueError:
        return "IP6" if ":" in host else "IP4"


def connection(host: str) -> str:
    """The c= value for our address: `IN IP4 192.0.2.1` or `IN IP6 ::1`."""
    return f"IN {address_type(host)} {host}"


def _encoding(rtpmap: str) -> tuple[str, str]:
    """("opus", "48000") from "opus/48000/2"."""
    name, _, rest = rtpmap.partition("/")
    return name.lower(), rest.partition("/")[0]


def rejected(offered: Media) -> Media:
    """The answer that rejects an offered stream: port 0, the offer's formats (RFC 3264 6)."""
    return Media(offered.kind, 0, offered.proto, offered.formats)


def answer_media(offered: Media, srtp_key: bytes = b"") -> Media:
    """The answer to one offered m= line (RFC 3264 6.1).

    An RTP stream with a usable codec keeps the offer's first codec and the offer's
    telephone-event formats at that codec's clock rate, each with its a=rtpmap
    (required for dynamic types, RFC 3264 6.1) and a=fmtp lines, and is marked
    inactive: the focus neither sends nor receives media. A secure RTP stream
    (RTP/SAVP(F)) also gets one a=crypto line answering the first offered suite
    the focus knows, keyed with the start of `srtp_key` (RFC 4568 7.1.2; at least
    46 bytes, random per dialog; never used, as no media flows). Anything else
    (no codec, no known crypto suite or no key, not RTP, port 0) is rejected with
    port 0.
    """
    secure = offered.proto.upper() in SRTP_PROFILES
    crypto = offered.crypto() if secure else None
    if offered.port == 0 or not offered.rtp or (secure and (crypto is None or not srtp_key)):
        return rejected(offered)
    maps = {f: m for f in offered.formats if (m := offered.rtpmap(f)) is not None}
    codec = next((f for f in maps if _encoding(maps[f])[0] not in AUXILIARY), None)
    if codec is None:
        return rejected(offered)
    rate = _encoding(maps[codec])[1]
    chosen = [codec] + [f for f in maps if _encoding(maps[f]) == ("telephone-event", rate)]
    attributes: list[str] = []
    for fmt in chosen:
        attributes.append(f"rtpmap:{fmt} {maps[fmt]}")
        attributes += offered.fmtp(fmt)
    if crypto is not None:
        tag, suite = crypto
        key = base64.b64encode(srtp_key[: SRTP_KEY_LENGTHS[suite]]).decode()
        attributes.append(f"crypto:{tag} {suite} inline:{key}")
    attributes.append("inactive")
    return Media(offered.kind, DISCARD_PORT, offered.proto, tuple(chosen), tuple(attributes))


def answer_streams(offer: SessionDescription, srtp_key: bytes = b"") -> tuple[Media, ...]:
    """The answer's m= lines: one per offered m= line, same order (RFC 3264 6);
    `srtp_key` as for `answer_media`."""
    return tuple(answer_media(m, srtp_key) for m in offer.media)


def focus_offer_streams() -> tuple[Media, ...]:
    """What the focus offers when the INVITE had no SDP (RFC 3264 5): one inactive audio
    stream with G.711 (which every phone has, RFC 3551) and telephone-event."""
    attributes = ("rtpmap:0 PCMU/8000", "rtpmap:8 PCMA/8000", "rtpmap:101 telephone-event/8000")
    return (
        Media(
            "audio",
            DISCARD_PORT,
            "RTP/AVP",
            ("0", "8", "101"),
            (*attributes, "fmtp:101 0-16", "inactive"),
        ),
    )


def check_answer(offer: SessionDescription, answer: SessionDescription) -> None:
    """Raise SdpError unless `answer` is a valid answer to `offer` (RFC 3264 6): the same
    t= line, the same number of m= lines with the same media type and transport in
    the same order, port 0 for streams the offer disabled, and every accepted RTP
    stream naming at least one of the offer's codecs with a defined payload type."""
    if answer.timing != offer.timing:
        raise SdpError(f"answer t={answer.timing!r} differs from the offer's t={offer.timing!r}")
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} m= lines, the offer {len(offer.media)}")
    for i, (off, ans) in enumerate(zip(offer.media, answer.media, strict=True)):
        where = f"m= line {i + 1}"
        if (ans.kind, ans.proto.upper()) != (off.kind, off.proto.upper()):
            raise SdpError(
                f"{where}: answer {ans.kind} {ans.proto} for offer {off.kind} {off.proto}"
            )
        if ans.port == 0:
            continue
        if off.port == 0:
            raise SdpError(f"{where}: the offer disabled the stream, the answer did not")
        if not off.rtp:
            continue
        offered = {_encoding(m) for f in off.formats if (m := off.rtpmap(f)) is not None}
        undefined = [f for f in ans.formats if ans.rtpmap(f) is None]
        if undefined:
            raise SdpError(f"{where}: payload type {undefined[0]} has no rtpmap")
        if not any(_encoding(m) in offered for f in ans.formats if (m := ans.rtpmap(f))):
            raise SdpError(f"{where}: no format of the answer was offered")


@dataclass(slots=True)
class MediaSession:
    """One dialog's SDP state (RFC 3264 8).

    `session_id` is fixed for the life of the dialog; `version` starts at 1 and
    grows by one each time the description we send differs from the last one
    sent. `pending` is an offer we sent and whose answer has not arrived yet.
    """

    session_id: int = field(default_factory=lambda: secrets.randbelow(2**62) + 1)
    srtp_key: bytes = field(default_factory=lambda: secrets.token_bytes(46), repr=False)
    version: int = 0
    pending: SessionDescription | None = None
    _last: tuple[str, str, tuple[Media, ...]] | None = None

    def _describe(self, host: str, timing: str, media: tuple[Media, ...]) -> bytes:
        if (host, timing, media) != self._last:
            self._last = (host, timing, media)
            self.version += 1
        origin = f"sipfleet {self.session_id} {self.version} {connection(host)}"
        return SessionDescription(
            origin, "sipfleet", timing, connection(host), (), media
        ).to_bytes()

    def answer(self, offer: bytes, host: str) -> bytes:
        """The SDP answer to an offer (RFC 3264 6), `host` being our IP address.

        Raises SdpError for an offer that does not parse (the INVITE then gets 488).
        """
        parsed = parse_sdp(offer)
        self.pending = None
        return self._describe(host, parsed.timing, answer_streams(parsed, self.srtp_key))

    def offer(self, host: str) -> bytes:
        """Our offer, for a 2xx to an INVITE that carried none (RFC 3264 5, RFC 3261
        13.2.1); the answer is expected in the ACK (`accept_answer`)."""
        body = self._describe(host, "0 0", focus_offer_streams())
        self.pending = parse_sdp(body)
        return body

    def accept_answer(self, answer: bytes) -> None:
        """Take the answer to our pending offer (from the ACK).

        Raises SdpError when no offer is pending, when the body does not parse, or
        when it is not a valid answer to the offer (RFC 3264 6). The offer is
        settled either way: a later ACK retransmission or re-INVITE starts afresh.
        """
        offer, self.pending = self.pending, None
        if offer is None:
            raise SdpError("an SDP answer arrived but no offer was outstanding")
        check_answer(offer, parse_sdp(answer))
