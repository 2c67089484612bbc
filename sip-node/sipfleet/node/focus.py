"""Group focus state: shards hosted here, their members and the dialogs with them.

A member is one INVITE dialog between a participant and this server, kept as
the SIP core's Dialog (RFC 3261 12: route set, remote target, CSeq both ways).
A fan-out builds each delivery with `Dialog.prepare`, the core's fast path:
the dialog's fixed fields are serialised once per remote target and the group
message's fields once per message, so a delivery costs a Via, a CSeq and a join.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sipfleet.node.admin_types import ShardState
from sipfleet.node.presentation import SenderDisplay
from sipfleet.node.sdp import MediaSession
from sipfleet.node.sip import SipMessage, SipParseError, SipUri, address_of, format_hostport
from sipfleet.node.sip.dialog import Dialog
from sipfleet.node.sip.message import HeaderBlock, Outbound
from sipfleet.node.transport import Peer

MemberState = Literal["joined", "transferring"]
DROPPED = frozenset({"delivery_timeout", "dialog_gone", "unacked"})
"""Reasons a session ends here without the member asking and without a move: each is
a member lost, counted in `Shard.dropped` (the operator posts it as an Event)."""
NO_FIELDS = HeaderBlock()
Locate = Callable[[str], Peer]
"""Where requests for a URI go (RFC 3263 4 without DNS), e.g. `SipStack.target_of` for
the peer a dialog came from. Raises SipParseError or sip.target.UnreachableTarget."""


@dataclass(eq=False, slots=True)
class Member:
    """One dialog with a participant (also used for conference subscriptions).
    `locate` maps the dialog's next hop to an address; `supports_replaces` says
    whether it announced RFC 3891 support."""

    aor: str
    dialog: Dialog
    locate: Locate
    supports_replaces: bool = False
    state: MemberState = "joined"
    media: MediaSession = field(default_factory=MediaSession)  # the dialog's SDP state
    accepts_cpim: bool = False  # listed message/cpim in an Accept header
    _peer: tuple[str, Peer] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.dialog.call_id, self.dialog.local_tag)

    @property
    def peer(self) -> Peer:
        """Where requests in the dialog go: its first route, else its remote target
        (RFC 3261 8.1.2, 12.2.1.1); follows target refreshes. Raises like `locate`
        (check a new remote target before it is taken)."""
        hop = self.dialog.next_hop
        cached = self._peer
        if cached is None or cached[0] is not hop:
            cached = self._peer = (hop, self.locate(hop))
        return cached[1]

    def request(
        self,
        method: str,
        sent_by: str,
        extra: HeaderBlock = NO_FIELDS,
        body: bytes = b"",
        transport: str | None = None,
        from_display: str = "",
    ) -> Outbound:
        """The next request in the dialog (route set, identities and CSeq as RFC 3261
        12.2.1.1 says). `sent_by` is our host:port; `extra` holds further fields;
        `from_display` replaces the From display name (a display name may change
        within a dialog, the URI and tag may not: RFC 3261 12.2.1.1)."""
        return self.dialog.prepare(
            method,
            sent_by=sent_by,
            transport=transport or self.peer.transport,
            extra=extra,
            body=body,
            from_display=from_display,
        )


@dataclass(eq=False, slots=True)
class Shard:
    """This server's part of a group: its URI here, room for `capacity` members,
    and how its members are shown who wrote a group message (`sender_display`;
    None: the server's default)."""

    group: str
    uri: str
    capacity: int
    draining: bool = False
    sender_display: SenderDisplay | None = None
    members: dict[tuple[str, str], Member] = field(default_factory=dict)
    by_aor: dict[str, Member] = field(default_factory=dict)
    dropped: int = 0
    """Members whose session ended here for a reason in `DROPPED`."""
    lost: int = 0
    """Members the previous process of this server had that nobody brought back
    after its crash (rejoin.py, restore.py)."""

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

    def state(self, server_draining: bool, sender_display: SenderDisplay) -> ShardState:
        """The shard as the admin API shows it; `sender_display` is how its members
        are shown who wrote a group message (its own mode, else the server's)."""
        return ShardState(
            group=self.group,
            uri=self.uri,
            members=len(self.members),
            capacity=self.capacity,
            draining=self.draining or server_draining,
            member_uris=tuple(sorted(self.by_aor)),
            sender_display=sender_display,
            dropped=self.dropped,
            lost=self.lost,
        )


def user_of(uri: str) -> str:
    """`sip:conf3@example.com` -> `conf3` (empty when the URI has no user part)."""
    rest = uri.split(":", 1)[-1]
    return rest.split("@", 1)[0] if "@" in rest else ""


def shard_uri(group_uri: str, server: str, host: str, port: int) -> str:
    """The shard URI this server gives a group: `sip:<group user>-<server>@host:port`."""
    return f"sip:{user_of(group_uri)}-{server}@{format_hostport(host, port)}"


def peer_of(uri: str, default_transport: str = "udp") -> Peer:
    """Where to send requests for a SIP URI (host:port, ;transport= honoured).
    Raises SipParseError for a URI that is not SIP."""
    parsed = SipUri.parse(uri)
    transport = (parsed.params.get("transport") or default_transport).lower()
    host = address_of(parsed.host)
    return Peer("tcp" if transport == "tcp" else "udp", host, parsed.port or 5060)


def focus_contact(uri: str) -> str:
    """Our Contact as a conference focus: `<uri>;isfocus` (RFC 4579 5.1)."""
    return f"<{uri}>;isfocus"


def supports_replaces(message: SipMessage) -> bool:
    """Does the message announce the `replaces` option tag (RFC 3891 6) in
    Supported or Require (RFC 3261 20.37, 20.32)? A malformed list counts as no."""
    try:
        tags = message.headers.get_list("Supported") + message.headers.get_list("Require")
    except SipParseError:
        return False
    return any(tag.strip().lower() == "replaces" for tag in tags)
