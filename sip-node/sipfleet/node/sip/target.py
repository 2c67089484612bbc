"""Where to send a request for a SIP URI (RFC 3263 section 4), without DNS.

The server sends in-dialog requests to a member's Contact for the life of the
dialog, from code that must never block. Resolution here is therefore pure:
an IP address is used as it is; `localhost` names mean the loopback address
(RFC 6761 6.3); `.invalid` names never resolve (RFC 6761 6.4); any other host
name raises `UnreachableTarget`, so the join that carries it is refused with a
clear answer instead of failing later (see docs of `request_target`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .uri import SipUri, address_of, ip_literal
from .via import default_port


class UnreachableTarget(ValueError):
    """A URI this server cannot send to; the message says why (for a Warning)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved request target: transport ("UDP", "TCP", "TLS"), IP address in
    socket form, port."""

    transport: str
    host: str
    port: int


def request_target(uri: SipUri, default_transport: str, loopback: str = "127.0.0.1") -> Target:
    """The transport, address and port for a request to `uri` (RFC 3263 4.1, 4.2).

    The transport is the URI's `transport` parameter, else TLS for sips:, else
    `default_transport` (the one the peer used to reach us). A `maddr`
    parameter overrides the host (RFC 3261 19.1.1). The port is the URI's, else
    5060 (5061 for TLS). `localhost` and `*.localhost` mean `loopback`.

    Raises UnreachableTarget for a tel: URI, a `.invalid` host, or another
    host name (names are not looked up: RFC 3263 SRV/A/AAAA needs DNS, which
    this server does not do for Contacts).
    """
    if uri.scheme not in ("sip", "sips"):
        raise UnreachableTarget(f"a {uri.scheme}: URI has no host to send to")
    transport = (uri.params.get("transport") or "").upper()
    if not transport:
        transport = "TLS" if uri.scheme == "sips" else default_transport.upper()
    host = uri.params.get("maddr") or uri.host
    port = uri.port or default_port(transport)
    if ip_literal(host) is not None:
        return Target(transport, address_of(host), port)
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return Target(transport, loopback, port)
    if name == "invalid" or name.endswith(".invalid"):
        raise UnreachableTarget(f"{host} can never resolve (RFC 6761 6.4)")
    raise UnreachableTarget(f"{host} is a host name; use an IP address in the Contact")
