"""Checks a UAS runs on a parsed request before acting on it (RFC 3261 8.2).

`check_request(request, policy)` returns the error response to send, or None
when the request may be processed. ACK is never answered: an invalid ACK
raises SipParseError (drop it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .errors import SipParseError
from .fields import NameAddr
from .ids import MAGIC_COOKIE
from .message import SipRequest, SipResponse
from .response import make_response
from .scan import split_commas

KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE"}
    | {"NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}
)
_Answer = tuple[int, list[tuple[str, str]]]  # status, extra headers
# (lower-case name, name) of the fields that must be present, and that must not repeat
_MANDATORY = tuple((n.lower(), n) for n in ("Via", "To", "From", "Call-ID", "CSeq"))
_SINGLE = tuple(
    (n.lower(), n) for n in ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Type")
)


@dataclass(frozen=True)
class Policy:
    """What this server implements.

    `accepted_types` None skips the Content-Type check; otherwise a request
    body of another type gets 415. `reject_zero_max_forwards` answers 483 to
    Max-Forwards: 0 (OPTIONS excepted), as a forwarding server must.
    """

    allowed_methods: frozenset[str] = frozenset(
        ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "REFER", "NOTIFY", "SUBSCRIBE"]
    )
    supported: frozenset[str] = frozenset({"replaces", "norefersub"})
    accepted_types: frozenset[str] | None = None
    reject_zero_max_forwards: bool = True


DEFAULT_POLICY = Policy()


def _warning(text: str) -> tuple[str, str]:
    """A Warning header naming the problem (RFC 3261 20.43, code 399)."""
    clean = text.replace("\\", "").replace('"', "'")[:200]
    return ("Warning", f'399 sipfleet "{clean}"')


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _accepts(accept: str, wanted: str) -> bool:
    major = wanted.split("/", 1)[0]
    ranges = {_media_type(v) for v in split_commas(accept)}
    return bool(ranges & {wanted, f"{major}/*", "*/*"})


@cache
def _allow_value(methods: frozenset[str]) -> str:
    """The Allow header value for `methods` (RFC 3261 20.5), built once per policy."""
    return ", ".join(sorted(methods))


def _syntax_error(request: SipRequest) -> str | None:
    """Name the first missing, repeated or malformed mandatory field."""
    headers = request.headers
    counts = headers.counts()
    for key, name in _MANDATORY:
        if key not in counts:
            return f"missing {name} header"
    for key, name in _SINGLE:
        if counts.get(key, 0) > 1:
            return f"more than one {name} header"
    try:
        top_via = request.via  # only the top Via is ours to read (a UAS)
        request.from_  # noqa: B018 - parsing is the check
        request.to  # noqa: B018
        _, method = request.cseq
        request.max_forwards  # noqa: B018
        if "contact" in counts:
            request.contact  # noqa: B018 - the first one, parsed once (the TU reads it)
            first = headers.get("Contact") or ""
            if counts["contact"] > 1 or "," in first:
                for value in headers.get_list("Contact")[1:]:
                    if value != "*":
                        NameAddr.parse(value)
    except SipParseError as exc:
        return exc.reason
    if top_via.branch == MAGIC_COOKIE:
        return "Via branch has the magic cookie but no transaction id"
    if method != request.method:
        return f"CSeq method {method} does not match request method {request.method}"
    return None


def check_request(request: SipRequest, policy: Policy = DEFAULT_POLICY) -> SipResponse | None:
    """The error response for `request`, or None when it may be processed."""
    problem = _syntax_error(request)
    allow = [("Allow", _allow_value(policy.allowed_methods))]
    answer: _Answer | None
    if request.version.upper() != "SIP/2.0":
        answer = (505, [])
    elif request.method not in policy.allowed_methods and request.method not in KNOWN_METHODS:
        answer = (501, allow)  # before CSeq checks: RFC 4475 3.1.2.18 prefers 501
    elif problem is not None:
        answer = (400, [_warning(problem)])
    else:
        answer = _semantic_error(request, policy, allow)
    if answer is None:
        return None
    status, headers = answer
    if request.method == "ACK":
        raise SipParseError(f"invalid ACK dropped (would be {status})", status)
    return make_response(request, status, headers=headers)


def _semantic_error(
    request: SipRequest, policy: Policy, allow: list[tuple[str, str]]
) -> _Answer | None:
    try:
        uri = request.request_uri
    except SipParseError as exc:
        return (exc.status, [_warning(exc.reason)])
    if uri.headers:
        return (400, [_warning("headers are not allowed in a Request-URI")])
    if request.method not in policy.allowed_methods:
        return (405, allow)
    zero_hops = request.max_forwards == 0 and request.method != "OPTIONS"
    if zero_hops and policy.reject_zero_max_forwards:
        return (483, [])
    required = request.headers.get_list("Require")
    unknown = [tag for tag in required if tag.lower() not in policy.supported]
    if unknown and request.method not in ("ACK", "CANCEL"):
        return (420, [("Unsupported", ", ".join(unknown))])
    accepted = policy.accepted_types
    content_type = request.headers.get("Content-Type") or ""
    if request.body and accepted is not None and _media_type(content_type) not in accepted:
        return (415, [("Accept", ", ".join(sorted(accepted)))])
    accept = request.headers.get("Accept")
    if request.method == "INVITE" and accept and not _accepts(accept, "application/sdp"):
        return (406, [("Accept", "application/sdp")])
    return None
