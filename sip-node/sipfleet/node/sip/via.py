"""Via processing at a server: stamping received/rport and choosing where a
response goes (RFC 3261 sections 18.2.1 and 18.2.2, RFC 3581 section 4).

Pure functions over parsed Via values; nothing here resolves names or opens
sockets. Addresses are socket-form `(host, port)` pairs: IPv6 without brackets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .fields import Via
from .uri import address_of, same_address

Address = tuple[str, int]

RELIABLE = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})
_SECURE = frozenset({"TLS", "TLS-SCTP", "WSS"})


def is_reliable(transport: str) -> bool:
    """True for connection-oriented transports (no retransmission timers, 17.1)."""
    return transport.upper() in RELIABLE


def default_port(transport: str) -> int:
    """The port a sent-by without one means: 5061 for TLS, else 5060 (RFC 3261 18.2.2, 19.1.2)."""
    return 5061 if transport.upper() in _SECURE else 5060


def stamp_via(via: Via, source: Address) -> Via:
    """The top Via of a received request with `received` and `rport` filled in.

    RFC 3261 18.2.1: `received` is added when the sent-by host differs from the
    source address. RFC 3581 section 4: when the Via has an empty `rport`, its
    value becomes the source port and `received` is added even when the host
    matches. Written in RFC 3261's grammar (an IPv6 address without brackets).
    Returns `via` itself when nothing changes.
    """
    rport_asked = "rport" in via.params and via.params["rport"] is None
    if not rport_asked and via.host == source[0]:
        return via  # the common case, without copying or parsing addresses
    params = dict(via.params)
    if rport_asked or not same_address(via.host, source[0]):
        params["received"] = address_of(source[0])
    if rport_asked:
        params["rport"] = str(source[1])
    if params == via.params:
        return via
    return Via(via.transport, via.host, via.port, params, via.protocol)


@dataclass(frozen=True, slots=True)
class ResponseRoute:
    """Where a response goes: `address` over `transport`; for reliable
    transports `address` is the connection the request came on, and `fallback`
    is where to open a new one if that connection is gone (RFC 3261 18.2.2)."""

    transport: str
    address: Address
    fallback: Address | None = None


def response_route(via: Via, source: Address, transport: str) -> ResponseRoute:
    """Where to send the responses to a request (RFC 3261 18.2.2, RFC 3581 4).

    `via` is the request's top Via as stamped by `stamp_via`, `source` the
    address the request came from and `transport` what it came over.

    - reliable transport: back on the same connection (`source`); if it is
      closed, a new one to `received` (or sent-by) at the sent-by port (default
      5060, 5061 for TLS);
    - `maddr` present: that address, at the sent-by port (default 5060);
    - `rport` filled in: `received` at the `rport` port (that is the source);
    - `received` present: that address at the sent-by port (default 5060);
    - otherwise: the sent-by host and port (the sent-by host is then the
      source address itself, or `stamp_via` would have added `received`).
    """
    transport = transport.upper()
    host = address_of(via.received or via.host)
    if is_reliable(transport):
        return ResponseRoute(transport, source, (host, via.port or default_port(transport)))
    port = via.port or 5060
    maddr = via.params.get("maddr")
    if maddr:
        return ResponseRoute(transport, (address_of(maddr), port))
    rport = via.rport
    return ResponseRoute(transport, (host, port if rport is None else rport))


_TOP_VIA_PROTOCOL = re.compile(
    rb"\r\n(?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z-]+)", re.IGNORECASE
)


def with_via_transport(data: bytes, transport: str) -> bytes:
    """A serialised request with its top Via's transport replaced (a request
    re-sent over UDP after its TCP connection failed, RFC 3261 18.1.1).
    Data without a Via header field is returned unchanged."""
    match = _TOP_VIA_PROTOCOL.search(data)
    if match is None:
        return data
    start, end = match.span(1)
    return data[:start] + transport.upper().encode() + data[end:]
