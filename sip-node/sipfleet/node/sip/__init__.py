"""Sans-I/O SIP protocol core (RFC 3261 and friends), in the style of h11.

Bytes in -> messages/events out; events in -> bytes out. Nothing here opens a
socket, touches asyncio or reads the clock: every time-dependent call takes
`now: float` (seconds, any monotonic origin). Bad input raises only
`SipParseError` (with `.status` to answer a request with, and `.reason`).

Messages (message.py)
    Headers(items=())            ordered, case-insensitive, multi-valued; compact
                                 names (i m e l c f s k t v o u r b) become canonical.
        .get(name, default=None) -> str | None       first value
        .get_all(name) -> list[str]                  every field value
        .get_list(name) -> list[str]                 comma-split elements (Via, Route, ...)
        .add(name, value) / .prepend(name, value) / .set(name, value) / .remove(name) -> int
        .copy(); .counts() -> {lower name: n}; iteration yields (name, value);
        len(); `name in headers`
    SipRequest(method, uri, headers=Headers(), body=b"", version="SIP/2.0")
    SipResponse(status, reason="", headers=Headers(), body=b"", version="SIP/2.0")
        .to_bytes() -> bytes     Content-Length is always written from len(body)
        accessors (parsed lazily, cached per raw value -- treat results as
        read-only; SipParseError if missing/bad):
        .call_id -> str, .cseq -> (int, method), .via -> Via (top), .vias,
        .from_ / .to -> NameAddr, .from_tag / .to_tag -> str | None,
        .contact -> NameAddr | None, .max_forwards -> int | None
    to_bytes(message) -> bytes;  SipMessage = SipRequest | SipResponse

Header values (uri.py, fields.py, scan.py)
    SipUri.parse(text) -> SipUri(scheme, host, user, password, port, params, headers)
        (an IPv6 host keeps its brackets; str() brackets one given without)
    format_host(host) / format_hostport(host, port): IPv6 bracketed (RFC 3261 25.1);
    address_of(host): socket form, brackets dropped
        sip/sips/tel; other schemes raise SipParseError(416); str() serialises;
        .same_as(other) compares per RFC 3261 19.1.4 (roughly).
    NameAddr.parse(text) -> NameAddr(uri: str, display, params); .tag; .sip_uri; str()
    Via.parse(text) -> Via(transport, host, port, params, protocol); .branch; .received; .rport;
        .sent_by; str()
    parse_params(";a=b;c") -> dict;  split_commas(text) -> list[str];
    quote(text) / unquote(text);  unescape(text) (%XX)

Parsing (parser.py)
    parse_message(data, limits=DEFAULT_LIMITS) -> SipRequest | SipResponse
        one datagram; body shorter than Content-Length -> 400, longer -> truncated.
        Content-Length is framing: the parser consumes it (not in .headers);
        to_bytes() always writes it from len(body).
    StreamFramer(limits).feed(data) -> list[SipMessage]    TCP framing by
        Content-Length; CRLF keepalives skipped; over-limit head/body -> SipParseError(413).
    Limits(max_head_bytes, max_headers, max_line, max_uri, max_body_bytes)

Answering (response.py, validate.py)
    make_response(request, status, reason=None, *, to_tag=None, headers=(), body=b"")
        RFC 3261 8.2.6: copies Via/From/To/Call-ID/CSeq (+Record-Route for 101-299),
        adds a To tag (to_tag or a fresh one) unless 100 or already tagged.
    error_response(err: SipParseError) -> SipResponse | None   answer to an
        unparseable request (None: drop). Carries `Warning: 399 ...` naming the problem.
    check_request(request, policy=DEFAULT_POLICY) -> SipResponse | None
        400 missing/repeated/bad mandatory fields, CSeq method mismatch, bare
        z9hG4bK branch; 416 URI scheme; 400 headers in Request-URI; 501 unknown
        method; 405 (+Allow) known but not allowed; 483 Max-Forwards 0 (not
        OPTIONS); 420 (+Unsupported); 415 (+Accept) if policy.accepted_types;
        406 INVITE whose Accept excludes application/sdp. Invalid ACK raises.
    Policy(allowed_methods, supported, accepted_types=None, reject_zero_max_forwards=True)
    reason_phrase(status); new_tag(); new_branch(); new_call_id(host)

Transactions (transaction.py) -- RFC 3261 17 + RFC 6026, virtual time
    layer = TransactionLayer(Timers(t1=0.5, t2=4.0, t4=5.0, trying=0.2, c=181.0))
    layer.receive(message, source: (host, port), transport, now) -> list[Event]
    layer.respond(server_tx_id, response, now) -> list[Event]
    layer.send_request(request, destination, transport, now) -> (client_tx_id, list[Event])
        (request needs a top Via with branch=new_branch(); not for ACK)
    layer.send_prepared(outbound, destination, transport, now)   the same for an
        Outbound(request, branch, data) built by Dialog.prepare (no re-parse/serialise)
    layer.cancel(invite_tx_id, now) -> list[Event]   CANCEL a client INVITE (9.1): at
        once if it got a provisional, else when one comes; it ends with its final
        response or 64*T1 later. Timer C (Timers.c) does this on its own after
        a provisional with no final answer (16.8); Timer B runs only in Calling.
    layer.tick(now) -> list[Event];  layer.next_deadline() -> float | None
    layer.stats: Stats(transactions, retransmissions, absorbed, timeouts,
        merged, stray_responses, dropped) -- plain ints; len(layer) = live transactions
    layer.transport_error(tx_id, now) -> list[Event]   a send failed (17.1.4):
        size-driven TCP re-sent over UDP (18.1.1), a closed TCP response
        connection re-opened to the sent-by port (18.2.2), else TransportFailed
    Events: Transmit(data, destination, transport, retransmission, tx_id),
        RequestReceived(tx_id, request, source, transport, cancels),
        AckReceived(request, source, transport, tx_id),      (ACK for a 2xx)
        ResponseReceived(tx_id, response, request),
        TransactionTimedOut(tx_id, request, server),
        TransportFailed(tx_id, request, server)
    Behaviour: 100 Trying after 200 ms if an INVITE is unanswered; 2xx to
    INVITE retransmitted (T1 doubling to T2) until the ACK (AckReceived once)
    or Timer L (then TransactionTimedOut: BYE the session); ACK for non-2xx
    absorbed; retransmitted requests re-answered with the last response;
    merged requests (8.2.2.2) answered 482 by the layer; non-2xx ACKs sent by
    client INVITE transactions; responses go where the top Via says
    (via.py: stamp_via, response_route -- RFC 3261 18.2.2, RFC 3581).
    Retransmissions only over UDP.

Dialogs (dialog.py) -- RFC 3261 12
    Dialog(call_id, local_tag, remote_tag, local_uri, remote_uri, remote_target,
           route_set=[], local_cseq=0, remote_cseq=None, local_contact=None,
           secure=False); .id; .next_hop (first route, else the remote target)
    Dialog.as_uas(request, local_tag, local_contact, transport=)
    Dialog.as_uac(our_request, response, local_contact)
    dialog.create_request(method, *, sent_by, transport="UDP", headers=(), body=b"",
        content_type=None) -> SipRequest      (BYE, REFER, NOTIFY, MESSAGE; next CSeq)
        Route set: loose router first -> Request-URI the remote target, Route the set;
        strict router first -> Request-URI that router, the remote target last in Route.
    dialog.prepare(method, *, sent_by, transport, extra=HeaderBlock, body, from_display)
        -> Outbound   the fast path (fixed fields serialised once per remote target)
    dialog.ack(invite_cseq, *, sent_by, transport) -> SipRequest   (ACK for a 2xx);
        dialog.ack_with(...) -> Outbound (with a body)
    dialog.receive(request) -> 500 | None     (CSeq order; target refresh)
    HeaderBlock(fields) (message.py): fields resolved and serialised once, reused
    incoming_dialog_id(message) -> (Call-ID, local tag, remote tag) | None
    make_cancel(invite) -> SipRequest   (send it with layer.send_request; same branch)
    new_request(method, uri, *, from_, to, call_id, cseq, sent_by, transport="UDP",
        contact=None, routes=(), headers=(), body=b"", content_type=None)  (out of dialog)

Bodies
    sipfrag.py: SIPFRAG_TYPE, build_sipfrag(status, reason) -> bytes,
        parse_sipfrag(body) -> (status, reason), subscription_state(state, expires=, reason=)
    replaces.py: Replaces(call_id, to_tag, from_tag, early_only).parse/str,
        refer_target(uri, replaces=None) -> "<uri?Replaces=...>", replaces_in(SipUri)
    cpim.py: CPIM_TYPE, CpimMessage(from_, to, content_type, body, headers),
        wrap_cpim(msg) -> bytes, unwrap_cpim(data) -> CpimMessage
    confinfo.py: CONFERENCE_INFO_TYPE, User(entity, display_text, endpoints, state),
        Endpoint(entity, status, state), conference_info(entity, version, users, *,
        state="full"|"partial", user_count=None, subject=None) -> bytes

Server loop sketch:
    try: msg = parse_message(datagram)
    except SipParseError as err:
        if (resp := error_response(err)): send(resp.to_bytes())   # else drop
    if request: if (resp := check_request(msg, policy)): send it; continue
    for ev in layer.receive(msg, addr, "UDP", now): ...   # and layer.tick(now) on timers

Notes for the server:
    - CANCEL is a RequestReceived with `cancels` = the INVITE's server tx id:
      answer the CANCEL 200 and the INVITE 487 (cancels None: answer 481).
    - An ACK for a 2xx arrives as AckReceived; a UAC sends its own ACK for a
      2xx (dialog.ack) as a plain Transmit, once per 2xx it receives.
    - After a StreamFramer error the byte stream is out of sync: send
      error_response(err) if any, then close the connection.
    - Header values keep undecodable bytes as surrogate escapes (round-trip
      safe); encode with errors="surrogateescape" (or "replace") if you
      re-encode them yourself.
    - Default Limits: 64 KiB head, 256 header fields, 8 KiB per (unfolded)
      line, 4 KiB Request-URI, 1 MiB stream body.
Compiled build (compiled.py): with `make venv`, scripts/build_mypyc.py compiles
the modules above with mypyc into ~/.cache/sipfleet/mypyc/<key of the sources>/;
when a build for the current sources exists it is used, else this pure Python
(the reference; SIPFLEET_PURE_PYTHON=1 forces it). `compiled.ACTIVE` says which.
"""

from . import compiled  # first: it puts a compiled build, if any, on this package's path
from .confinfo import CONFERENCE_INFO_TYPE, Endpoint, User, conference_info
from .cpim import CPIM_TYPE, CpimMessage, unwrap_cpim, wrap_cpim
from .dialog import Dialog, DialogId, incoming_dialog_id, make_cancel, new_request
from .errors import SipParseError
from .fields import NameAddr, Via, parse_cseq
from .ids import new_branch, new_call_id, new_tag
from .message import Headers, SipMessage, SipRequest, SipResponse, canonical_name, to_bytes
from .parser import DEFAULT_LIMITS, Limits, StreamFramer, parse_message
from .replaces import Replaces, refer_target, replaces_in
from .response import error_response, make_response, reason_phrase
from .scan import parse_params, quote, split_commas, unquote
from .sipfrag import SIPFRAG_TYPE, build_sipfrag, parse_sipfrag, subscription_state
from .transaction import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    Stats,
    Timers,
    TransactionLayer,
    TransactionTimedOut,
    Transmit,
    TransportFailed,
)
from .uri import SipUri, address_of, format_host, format_hostport, unescape
from .validate import DEFAULT_POLICY, KNOWN_METHODS, Policy, check_request
from .via import Address

__all__ = [
    "CONFERENCE_INFO_TYPE",
    "CPIM_TYPE",
    "DEFAULT_LIMITS",
    "DEFAULT_POLICY",
    "KNOWN_METHODS",
    "SIPFRAG_TYPE",
    "AckReceived",
    "Address",
    "CpimMessage",
    "Dialog",
    "DialogId",
    "Endpoint",
    "Event",
    "Headers",
    "Limits",
    "NameAddr",
    "Policy",
    "Replaces",
    "RequestReceived",
    "ResponseReceived",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "Stats",
    "StreamFramer",
    "Timers",
    "TransactionLayer",
    "TransactionTimedOut",
    "Transmit",
    "TransportFailed",
    "User",
    "Via",
    "address_of",
    "build_sipfrag",
    "canonical_name",
    "check_request",
    "compiled",
    "conference_info",
    "error_response",
    "format_host",
    "format_hostport",
    "incoming_dialog_id",
    "make_cancel",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_request",
    "new_tag",
    "parse_cseq",
    "parse_message",
    "parse_params",
    "parse_sipfrag",
    "quote",
    "reason_phrase",
    "refer_target",
    "replaces_in",
    "split_commas",
    "subscription_state",
    "to_bytes",
    "unescape",
    "unquote",
    "unwrap_cpim",
    "wrap_cpim",
]
