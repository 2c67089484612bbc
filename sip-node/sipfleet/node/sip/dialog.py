"""Dialog state (RFC 3261 section 12) for INVITE dialogs and subscriptions,
and building requests inside and outside dialogs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import SipParseError
from .fields import NameAddr
from .ids import new_branch
from .message import Headers, SipMessage, SipRequest, SipResponse

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


def new_request(
    method: str,
    uri: str,
    *,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    sent_by: str,
    transport: str = "UDP",
    contact: str | None = None,
    routes: Iterable[str] = (),
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """A request with a fresh Via branch (and rport), Max-Forwards 70, the
    given From/To values (tags included), CSeq `cseq method`, optional
    Contact `<contact>`, Route values, extra headers and body."""
    out = Headers()
    out.add("Via", f"SIP/2.0/{transport.upper()} {sent_by};branch={new_branch()};rport")
    out.add("Max-Forwards", "70")
    for route in routes:
        out.add("Route", route)
    out.add("From", from_)
    out.add("To", to)
    out.add("Call-ID", call_id)
    out.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        out.add("Contact", f"<{contact}>")
    for name, value in headers:
        out.add(name, value)
    if content_type is not None:
        out.add("Content-Type", content_type)
    return SipRequest(method, uri, out, body)


def make_cancel(invite: SipRequest) -> SipRequest:
    """The CANCEL for a pending INVITE we sent (RFC 3261 9.1): same
    Request-URI, Call-ID, From, To, CSeq number, top Via and Route."""
    out = Headers()
    out.add("Via", invite.headers.get_list("Via")[0])
    out.add("Max-Forwards", "70")
    for name in ("Route", "From", "To", "Call-ID"):
        for value in invite.headers.get_all(name):
            out.add(name, value)
    out.add("CSeq", f"{invite.cseq[0]} CANCEL")
    return SipRequest("CANCEL", invite.uri, out)


def incoming_dialog_id(message: SipMessage) -> DialogId | None:
    """The id (from our side) of the dialog an incoming message belongs to:
    a request's To tag / a response's From tag is our local tag. None for a
    request without a To tag (not in a dialog)."""
    if isinstance(message, SipRequest):
        local, remote = message.to_tag, message.from_tag
    else:
        local, remote = message.from_tag, message.to_tag
    if local is None:
        return None
    return (message.call_id, local, remote or "")


def _untagged(value: str) -> NameAddr:
    addr = NameAddr.parse(value)
    addr.params.pop("tag", None)
    return addr


def _remote_target(message: SipMessage) -> str:
    contact = message.contact
    if contact is None:
        raise SipParseError("dialog-creating message has no Contact")
    return contact.uri


@dataclass
class Dialog:
    """One dialog. `local_uri`/`remote_uri` are name-addr values without tags."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int | None = None
    local_contact: str | None = None

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(
        cls, request: SipRequest, response: SipResponse, local_contact: str | None = None
    ) -> Dialog:
        """The dialog we created by answering `request` with `response` (12.1.1)."""
        return cls(
            call_id=request.call_id,
            local_tag=response.to_tag or "",
            remote_tag=request.from_tag or "",
            local_uri=str(_untagged(request.headers.get("To") or "")),
            remote_uri=str(_untagged(request.headers.get("From") or "")),
            remote_target=_remote_target(request),
            route_set=request.headers.get_list("Record-Route"),
            remote_cseq=request.cseq[0],
            local_contact=local_contact,
        )

    @classmethod
    def as_uac(
        cls, request: SipRequest, response: SipResponse, local_contact: str | None = None
    ) -> Dialog:
        """The dialog our `request` created, from its 2xx `response` (12.1.2)."""
        return cls(
            call_id=request.call_id,
            local_tag=request.from_tag or "",
            remote_tag=response.to_tag or "",
            local_uri=str(_untagged(request.headers.get("From") or "")),
            remote_uri=str(_untagged(request.headers.get("To") or "")),
            remote_target=_remote_target(response),
            route_set=list(reversed(response.headers.get_list("Record-Route"))),
            local_cseq=request.cseq[0],
            local_contact=local_contact,
        )

    def create_request(
        self,
        method: str,
        *,
        sent_by: str,
        transport: str = "UDP",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """An in-dialog request (BYE, REFER, NOTIFY, MESSAGE, ...); takes the
        next local CSeq. Loose routing: Request-URI is the remote target."""
        self.local_cseq += 1
        return self._request(
            method, self.local_cseq, sent_by, transport, headers, body, content_type
        )

    def ack(self, invite_cseq: int, *, sent_by: str, transport: str = "UDP") -> SipRequest:
        """The ACK for a 2xx to our INVITE with CSeq number `invite_cseq`."""
        return self._request("ACK", invite_cseq, sent_by, transport, (), b"", None)

    def _request(
        self,
        method: str,
        cseq: int,
        sent_by: str,
        transport: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
    ) -> SipRequest:
        contact = self.local_contact if method in _TARGET_REFRESH else None
        return new_request(
            method,
            self.remote_target,
            from_=f"{self.local_uri};tag={self.local_tag}",
            to=f"{self.remote_uri};tag={self.remote_tag}",
            call_id=self.call_id,
            cseq=cseq,
            sent_by=sent_by,
            transport=transport,
            contact=contact,
            routes=self.route_set,
            headers=headers,
            body=body,
            content_type=content_type,
        )

    def receive(self, request: SipRequest) -> int | None:
        """Account for an incoming in-dialog request (12.2.2): returns 500 when
        its CSeq is out of order, else None (and refreshes the remote target)."""
        number, _ = request.cseq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_cseq is not None and number <= self.remote_cseq:
                return 500
            self.remote_cseq = number
        if request.method in ("INVITE", "UPDATE") and request.contact is not None:
            self.remote_target = request.contact.uri
        return None
