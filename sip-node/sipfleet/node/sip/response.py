"""Building responses to requests (RFC 3261 section 8.2.6)."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import SipParseError
from .fields import NameAddr
from .ids import new_tag
from .message import Headers, SipRequest, SipResponse

REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}
_COPIED = ("Via", "From", "To", "Call-ID", "CSeq")
_COPIED_KEYS = frozenset(name.lower() for name in _COPIED)


def reason_phrase(status: int) -> str:
    return REASONS.get(status, "Unknown")


def _tagged(to_value: str, has_tag: bool, tag: str | None) -> str:
    return to_value if has_tag else f"{to_value};tag={tag or new_tag()}"


def _has_tag(to_value: str) -> bool:
    try:
        return NameAddr.parse(to_value).tag is not None
    except SipParseError:
        return True  # answer anyway, echoing the value unchanged


def response_from_headers(
    request_headers: Headers,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    to_has_tag: bool | None = None,
) -> SipResponse:
    """Core of `make_response`, usable when only the request's headers are known."""
    out = Headers()
    record_route = 100 < status < 300
    for item in request_headers.fields():  # names already resolved: copied as they are
        key = item[0]
        if key in _COPIED_KEYS or (record_route and key == "record-route"):
            if key == "to" and status != 100:
                value = item[2]
                has_tag = _has_tag(value) if to_has_tag is None else to_has_tag
                item = (key, item[1], _tagged(value, has_tag, to_tag))
            out.add_item(item)
    for name, value in headers:
        out.add(name, value)
    return SipResponse(status, reason or reason_phrase(status), out, body)


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """A response to `request`: Via (all), From, To, Call-ID, CSeq copied
    (Record-Route too for 101-299); a To tag is added when the request had
    none, except for 100 (`to_tag` or a fresh one; pass the dialog's tag to
    keep it stable across provisional and final responses). `headers` are
    appended (put Content-Type there when giving a body)."""
    try:
        has_tag = request.to_tag is not None  # cached on the request
    except SipParseError:
        has_tag = True  # answer anyway, echoing the To value unchanged
    return response_from_headers(
        request.headers,
        status,
        reason,
        to_tag=to_tag,
        headers=headers,
        body=body,
        to_has_tag=has_tag,
    )


def error_response(error: SipParseError) -> SipResponse | None:
    """The response for a request that failed to parse, or None when it
    cannot be answered (a response, or headers too broken to route back)."""
    if not error.is_request or error.headers is None:
        return None
    if any(error.headers.get(name) is None for name in _COPIED):
        return None
    warning = error.reason.replace("\\", "").replace('"', "'")[:200]
    extra = [("Warning", f'399 sipfleet "{warning}"')]
    return response_from_headers(error.headers, error.status, headers=extra)
