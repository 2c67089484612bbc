"""Server-to-server SIP requests: the sipfleet headers, signing and reading them back.

Tree traffic is a MESSAGE over TCP to the peer's shard URI carrying
X-Sipfleet-Kind (group | roster), X-Sipfleet-Group, X-Sipfleet-Msg-Id (for
loop-free, exactly-once forwarding), X-Sipfleet-Origin (server name) and, for
group messages, X-Sipfleet-Sender (the member who wrote it). Every
server-to-server request is signed (see s2s_auth).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipfleet.node.s2s_auth import HEADER as AUTH_HEADER
from sipfleet.node.s2s_auth import Verifier, sign
from sipfleet.node.sip import Headers, SipRequest
from sipfleet.node.sip.ids import new_branch

PREFIX = "x-sipfleet-"
KIND, GROUP, MSG_ID, ORIGIN, SENDER = (
    "X-Sipfleet-Kind",
    "X-Sipfleet-Group",
    "X-Sipfleet-Msg-Id",
    "X-Sipfleet-Origin",
    "X-Sipfleet-Sender",
)
MEMBER = "X-Sipfleet-Member"
MEMBER_ROUTE = "X-Sipfleet-Member-Route"  # the member's route set (RFC 3261 12.1.1), if any


# Left out of the MAC: what the transport may legitimately change (Via gets
# received/rport, Max-Forwards counts down, Content-Length is rewritten) and the
# signature itself.
UNSIGNED = frozenset({"via", "max-forwards", "content-length", AUTH_HEADER.lower()})


def signed_parts(request: SipRequest) -> list[bytes]:
    """What the MAC covers: method, Request-URI, every other header field in order
    (name lower-cased), and the body."""
    head = [request.method, request.uri]
    head += [f"{n.lower()}:{v}" for n, v in request.headers if n.lower() not in UNSIGNED]
    return [p.encode("utf-8", "surrogateescape") for p in head] + [request.body]


def sign_request(request: SipRequest, key: bytes, now: float) -> None:
    request.headers.set(AUTH_HEADER, sign(key, signed_parts(request), now))


def verify_request(request: SipRequest, verifier: Verifier, now: float) -> None:
    """Raise AuthError unless the request carries a valid, fresh signature."""
    verifier.verify(request.headers.get(AUTH_HEADER), signed_parts(request), now)


def is_s2s(request: SipRequest) -> bool:
    """Does the request claim to come from a peer server?"""
    return request.headers.has_name_prefix(PREFIX)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A group message or roster update travelling along the tree."""

    kind: str
    group: str
    msg_id: str
    origin: str
    sender: str
    content_type: str
    body: bytes

    def headers(self) -> list[tuple[str, str]]:
        out = [(KIND, self.kind), (GROUP, self.group), (MSG_ID, self.msg_id), (ORIGIN, self.origin)]
        if self.sender:
            out.append((SENDER, f"<{self.sender}>"))
        return out

    @classmethod
    def from_request(cls, request: SipRequest) -> Envelope:
        h = request.headers
        kind, group, msg_id = h.get(KIND), h.get(GROUP), h.get(MSG_ID)
        if kind not in ("group", "roster") or not group or not msg_id:
            raise ValueError("server-to-server MESSAGE lacks kind, group or message id")
        return cls(
            kind,
            group,
            msg_id,
            h.get(ORIGIN) or "",
            (h.get(SENDER) or "").strip("<>"),
            h.get("Content-Type") or "text/plain",
            request.body,
        )


def build_request(
    method: str,
    uri: str,
    *,
    sent_by: str,
    from_uri: str,
    from_tag: str,
    to: str,
    call_id: str,
    cseq: int,
    headers: list[tuple[str, str]],
    body: bytes,
    key: bytes,
    now: float,
    transport: str = "TCP",
) -> SipRequest:
    """A signed request to send to a peer server over `transport` (TCP or TLS)."""
    h = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {sent_by};branch={new_branch()}"),
            ("Max-Forwards", "70"),
            ("From", f"<{from_uri}>;tag={from_tag}"),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            *headers,
        ]
    )
    request = SipRequest(method, uri, h, body)
    sign_request(request, key, now)
    return request
