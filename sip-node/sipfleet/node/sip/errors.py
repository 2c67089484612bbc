"""The one exception the SIP core raises for bad input."""


class SipParseError(Exception):
    """Malformed or unacceptable SIP input.

    `status` is the response code a server should answer a request with (400,
    413, 414, 416, 420, 505, ...); `reason` names what is wrong. For a bad
    response (or when no answer is possible) the message is simply dropped.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
