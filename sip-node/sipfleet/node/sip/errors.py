"""The one exception the SIP core raises for bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Headers


class SipParseError(Exception):
    """Malformed or unacceptable SIP input.

    `status` is the response code a server should answer a request with (400,
    413, 414, 416, 420, 505, ...); `reason` names what is wrong. For a bad
    response (or when no answer is possible) the message is simply dropped.

    When the parser got as far as the header fields of a request, `headers`
    holds them and `is_request` is True, so `error_response(err)` can still
    answer (RFC 4475 asks for a 400 to e.g. a bad Content-Length).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers: Headers | None = None
        self.is_request = False
