"""Dialog state (RFC 3261 section 12) for INVITE dialogs and subscriptions,
and building requests inside and outside dialogs.

A dialog's requests follow its route set (12.2.1.1): with a loose router first
(`;lr`) the Request-URI is the remote target and the route set goes into Route;
with a strict router first the Request-URI is that router and the remote target
is the last Route. `Dialog.prepare` is the fast path a group fan-out uses: the
dialog's fixed header fields are resolved and serialised once (a HeaderBlock,
rebuilt when a target refresh changes the remote target) and a request costs a
Via, a CSeq and a byte join.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import SipParseError
from .fields import NameAddr
from .ids import new_branch
from .message import (
    HeaderBlock,
    Headers,
    Outbound,
    SipMessage,
    SipRequest,
    SipResponse,
    field_name,
)
from .uri import SipUri

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)
# Requests that carry our Contact (RFC 3261 12.2.1.1 target refresh; RFC 6665 4.1.2,
# 4.2.2 for SUBSCRIBE/NOTIFY; RFC 3515 2.4.1 lets REFER's recipient reach us there).
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# Requests whose Contact refreshes the remote target when we receive them (RFC 3261
# 12.2.2; RFC 6665 4.1.2.1).
_REFRESHES_TARGET = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"})
_NO_FIELDS = HeaderBlock()
_VIA, _FROM, _CSEQ = field_name("Via"), field_name("From"), field_name("CSeq")


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


def _route_uri(route: str) -> str:
    return NameAddr.parse(route).uri


def _is_loose(route: str) -> bool:
    return "lr" in NameAddr.parse(route).sip_uri.params


def _as_request_uri(uri: str) -> str:
    """A route URI made fit for a Request-URI (12.2.1.1; 19.1.1 table 1: no
    `method` parameter, no headers)."""
    parsed = SipUri.parse(uri)
    parsed.params.pop("method", None)
    parsed.headers = ""
    return str(parsed)


def _bare(addr: NameAddr) -> NameAddr:
    """`addr` without its display name."""
    return NameAddr(addr.uri, None, addr.params)


class _Block:
    """The fixed part of a dialog's requests for one remote target (12.2.1.1)."""

    __slots__ = (
        "after_from",
        "before_from",
        "contact",
        "display",
        "from_tail",
        "local_contact",
        "next_hop",
        "target",
        "uri",
        "uri_line",
    )

    def __init__(self, dialog: Dialog) -> None:
        self.target = dialog.remote_target
        self.local_contact = contact = dialog.local_contact
        if contact is None:
            self.contact = _NO_FIELDS
        else:
            value = contact if contact.startswith(("<", '"')) else f"<{contact}>"
            self.contact = HeaderBlock([("Contact", value)])
        routes = list(dialog.route_set)
        if routes and not _is_loose(routes[0]):  # strict router first
            self.uri = _as_request_uri(_route_uri(routes[0]))
            routes = [*routes[1:], f"<{dialog.remote_target}>"]
            self.next_hop = self.uri
        else:
            self.uri = dialog.remote_target
            self.next_hop = _route_uri(routes[0]) if routes else self.uri
        self.uri_line = f" {self.uri} SIP/2.0\r\nVia: ".encode()
        self.before_from = HeaderBlock(
            [("Max-Forwards", "70"), *(("Route", route) for route in routes)]
        )
        local = NameAddr.parse(dialog.local_uri)
        self.display = "" if local.display is None else str(local)[: -len(str(_bare(local)))]
        self.from_tail = f"{_bare(local)};tag={dialog.local_tag}"
        self.after_from = HeaderBlock(
            [("To", f"{dialog.remote_uri};tag={dialog.remote_tag}"), ("Call-ID", dialog.call_id)]
        )


@dataclass(eq=False)
class Dialog:
    """One dialog (RFC 3261 12). `local_uri`/`remote_uri` are name-addr values
    without tags, as the dialog was created with: every request we send in it uses
    them for From and To (RFC 4579 asks the same of a focus). `route_set` holds
    Route values in the order requests carry them and does not change once the
    dialog exists (12.1.1, 12.1.2); `remote_target` changes with target refresh
    requests. `secure` is the dialog's secure flag (sips over TLS). `local_contact`
    is our Contact field value (a bare URI gets angle brackets), sent in target
    refresh requests."""

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
    secure: bool = False
    _block: _Block | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._block = None  # set here too: a mypyc-compiled dataclass skips init=False defaults

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(
        cls,
        request: SipRequest,
        local_tag: str,
        local_contact: str | None = None,
        *,
        transport: str = "UDP",
    ) -> Dialog:
        """The dialog we create by answering `request` (received over `transport`)
        with a 2xx whose To tag is `local_tag` (12.1.1: route set from Record-Route
        in order, remote target from Contact, secure when a sips Request-URI came
        over TLS). Raises SipParseError when the request has no Contact or a bad
        From/To."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local_uri=str(_untagged(request.headers.get("To") or "")),
            remote_uri=str(_untagged(request.headers.get("From") or "")),
            remote_target=_remote_target(request),
            route_set=request.headers.get_list("Record-Route"),
            remote_cseq=request.cseq[0],
            local_contact=local_contact,
            secure=transport.upper() == "TLS" and request.uri.lower().startswith("sips:"),
        )

    @classmethod
    def as_uac(
        cls, request: SipRequest, response: SipResponse, local_contact: str | None = None
    ) -> Dialog:
        """The dialog our `request` created, from its 2xx `response` (12.1.2: route
        set from Record-Route reversed). Raises SipParseError without a Contact."""
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
            secure=request.uri.lower().startswith("sips:"),
        )

    @property
    def next_hop(self) -> str:
        """The URI whose host, port and transport a request in this dialog is sent
        to (RFC 3261 8.1.2, 12.2.1.1): the first route, else the remote target."""
        return self._fixed().next_hop

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
        next local CSeq."""
        fields = list(headers)
        if content_type is not None:
            fields.append(("Content-Type", content_type))
        return self.prepare(
            method, sent_by=sent_by, transport=transport, extra=HeaderBlock(fields), body=body
        ).request

    def prepare(
        self,
        method: str,
        *,
        sent_by: str,
        transport: str = "UDP",
        extra: HeaderBlock = _NO_FIELDS,
        body: bytes = b"",
        from_display: str = "",
    ) -> Outbound:
        """An in-dialog request with the next local CSeq, with its branch and wire
        form, for `TransactionLayer.send_prepared`. `extra` holds further fields
        (Content-Type among them), built once when many requests share them.
        `from_display` (e.g. `"alice" `, a quoted string and a space) replaces the
        From display name for this request: only From's URI and tag are fixed by
        the dialog (12.2.1.1)."""
        self.local_cseq += 1
        return self._prepare(method, self.local_cseq, sent_by, transport, extra, body, from_display)

    def ack(self, invite_cseq: int, *, sent_by: str, transport: str = "UDP") -> SipRequest:
        """The ACK for a 2xx to our INVITE with CSeq number `invite_cseq` (13.2.2.4)."""
        return self.ack_with(invite_cseq, sent_by=sent_by, transport=transport).request

    def ack_with(
        self,
        invite_cseq: int,
        *,
        sent_by: str,
        transport: str = "UDP",
        extra: HeaderBlock = _NO_FIELDS,
        body: bytes = b"",
    ) -> Outbound:
        """The ACK for a 2xx, carrying `body` (an SDP answer to an offer in the 2xx)."""
        return self._prepare("ACK", invite_cseq, sent_by, transport, extra, body, "")

    def _fixed(self) -> _Block:
        block = self._block
        if (
            block is None
            or block.target is not self.remote_target
            or block.local_contact is not self.local_contact
        ):
            block = self._block = _Block(self)  # a target refresh invalidates it
        return block

    def _prepare(
        self,
        method: str,
        cseq: int,
        sent_by: str,
        transport: str,
        extra: HeaderBlock,
        body: bytes,
        from_display: str,
    ) -> Outbound:
        block = self._fixed()
        from_value = (from_display or block.display) + block.from_tail
        branch = new_branch()
        via = f"SIP/2.0/{transport.upper()} {sent_by};branch={branch};rport"
        cseq_value = f"{cseq} {method}"
        contact = block.contact if method in _TARGET_REFRESH else _NO_FIELDS
        headers = Headers.of_items(
            [
                (*_VIA, via),
                *block.before_from.items,
                (*_FROM, from_value),
                *block.after_from.items,
                (*_CSEQ, cseq_value),
                *contact.items,
                *extra.items,
            ]
        )
        request = SipRequest(method, block.uri, headers, body)
        data = b"".join(
            (
                method.encode(),
                block.uri_line,
                via.encode(),
                b"\r\n",
                block.before_from.data,
                b"From: ",
                from_value.encode("utf-8", "surrogateescape"),
                b"\r\n",
                block.after_from.data,
                b"CSeq: ",
                cseq_value.encode(),
                b"\r\n",
                contact.data,
                extra.data,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        return Outbound(request, branch, data)

    def receive(self, request: SipRequest) -> int | None:
        """Account for an incoming in-dialog request (12.2.2): returns 500 when
        its CSeq is out of order, else None (and refreshes the remote target from
        a target refresh request's Contact)."""
        number, _ = request.cseq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_cseq is not None and number <= self.remote_cseq:
                return 500
            self.remote_cseq = number
        if request.method in _REFRESHES_TARGET and request.contact is not None:
            self.remote_target = request.contact.uri
        return None
