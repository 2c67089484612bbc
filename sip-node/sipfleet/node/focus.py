"""Group focus state: shards hosted here, their members and the dialogs with them.

A member is one INVITE dialog between a participant and this server. The
MESSAGE delivered to a member is assembled from byte templates made once per
member (dialog headers) and once per group message (sender, body), so a
fan-out does no per-delivery serialisation beyond the Via branch and CSeq.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sipfleet.node.sdp import MediaSession
from sipfleet.node.sip import Headers, SipRequest, SipUri, Via, address_of, format_hostport
from sipfleet.node.sip.ids import new_branch
from sipfleet.node.transport import Peer

MemberState = Literal["joined", "transferring"]


@dataclass
class PrebuiltRequest(SipRequest):
    """Adapter for the core's client transactions: a request whose wire form was
    assembled from byte templates. Of the request, the transaction layer reads only
    the method, the top Via (given here already parsed, so it is not parsed back
    from text on the hot path) and the wire form."""

    wire: bytes = b""
    top_via: Via | None = None

    @property
    def via(self) -> Via:
        return self.top_via if self.top_via is not None else super().via

    def to_bytes(self) -> bytes:
        return self.wire


@dataclass(eq=False, slots=True)
class Member:
    """One dialog with a participant (also used for conference subscriptions)."""

    aor: str
    contact: str
    peer: Peer
    call_id: str
    remote_tag: str
    local_tag: str
    local_uri: str
    local_cseq: int = 1
    state: MemberState = "joined"
    media: MediaSession = field(default_factory=MediaSession)  # the dialog's SDP state
    accepts_cpim: bool = False  # listed message/cpim in an Accept header
    request_prefix: bytes = b""
    dialog_headers: bytes = b""
    from_rest: bytes = b""  # dialog_headers after "From: ", for a From with a display name

    def __post_init__(self) -> None:
        self.request_prefix = f" {self.contact} SIP/2.0\r\nVia: ".encode()
        self.from_rest = (
            f"<{self.local_uri}>;tag={self.local_tag}\r\nMax-Forwards: 70\r\n"
            f"To: <{self.aor}>;tag={self.remote_tag}\r\nCall-ID: {self.call_id}\r\n"
        ).encode()
        self.dialog_headers = b"From: " + self.from_rest

    @property
    def key(self) -> tuple[str, str]:
        return (self.call_id, self.local_tag)

    def request(
        self,
        method: str,
        sent_by: str,
        extra: bytes,
        body: bytes = b"",
        transport: str | None = None,
        from_display: bytes = b"",
    ) -> PrebuiltRequest:
        """An in-dialog request from the templates. `sent_by` is our host:port; `extra`
        holds further header lines (each ending in CRLF) without Content-Length;
        `from_display` is put before the From URI (a display name may change within
        a dialog, the URI and tag may not: RFC 3261 12.2.1.1)."""
        self.local_cseq += 1
        transport = (transport or self.peer.transport).upper()
        branch = new_branch()
        host, _, port = sent_by.rpartition(":")
        via = Via(transport, host, int(port), {"branch": branch})
        wire = b"".join(
            (
                method.encode(),
                self.request_prefix,
                f"SIP/2.0/{transport} {sent_by};branch={branch}\r\n".encode(),
                b"From: " + from_display + self.from_rest if from_display else self.dialog_headers,
                f"CSeq: {self.local_cseq} {method}\r\n".encode(),
                extra,
                f"Content-Length: {len(body)}\r\n\r\n".encode(),
                body,
            )
        )
        return PrebuiltRequest(method, self.contact, Headers(), wire=wire, top_via=via)


@dataclass(eq=False, slots=True)
class Shard:
    group: str
    uri: str
    capacity: int
    draining: bool = False
    members: dict[tuple[str, str], Member] = field(default_factory=dict)
    by_aor: dict[str, Member] = field(default_factory=dict)

    def add(self, member: Member) -> None:
        self.members[member.key] = member
        self.by_aor[member.aor] = member

    def remove(self, member: Member) -> None:
        self.members.pop(member.key, None)
        if self.by_aor.get(member.aor) is member:
            del self.by_aor[member.aor]

    @property
    def has_room(self) -> bool:
        return not self.draining and len(self.members) < self.capacity

    def to_json(self, server_draining: bool) -> dict[str, object]:
        return {
            "group": self.group,
            "uri": self.uri,
            "members": len(self.members),
            "capacity": self.capacity,
            "draining": self.draining or server_draining,
            "member_uris": sorted(self.by_aor),
        }


def user_of(uri: str) -> str:
    """`sip:conf3@example.com` -> `conf3` (empty when the URI has no user part)."""
    rest = uri.split(":", 1)[-1]
    return rest.split("@", 1)[0] if "@" in rest else ""


def shard_uri(group_uri: str, server: str, host: str, port: int) -> str:
    """The shard URI this server gives a group: `sip:<group user>-<server>@host:port`."""
    return f"sip:{user_of(group_uri)}-{server}@{format_hostport(host, port)}"


def peer_of(uri: str, default_transport: str = "udp") -> Peer:
    """Where to send requests for a SIP URI (host:port, ;transport= honoured)."""
    parsed = SipUri.parse(uri)
    transport = (parsed.params.get("transport") or default_transport).lower()
    host = address_of(parsed.host)
    return Peer("tcp" if transport == "tcp" else "udp", host, parsed.port or 5060)
