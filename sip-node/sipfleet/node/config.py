"""Server configuration: the validated settings the CLI hands to the server."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from sipfleet.node.auth.credentials import CredentialStore
from sipfleet.node.auth.policy import OPEN, SECURE_DEFAULT, AccessPolicy
from sipfleet.node.presentation import SenderDisplay
from sipfleet.node.tls import TlsSettings

Role = Literal["main", "node"]


class ConfigError(ValueError):
    """A setting is wrong; the message says which one and how to fix it."""


@dataclass(frozen=True, slots=True)
class Config:
    role: Role
    name: str
    domain: str
    listen: str
    sip_port: int
    admin_port: int
    token: str
    tree_fanout: int = 8
    rate_limit: float = 500.0
    rate_burst: float = 1000.0
    rate_table_size: int = 10000
    sender_display: SenderDisplay = SenderDisplay.AUTO
    shutdown_seconds: float = 30.0
    """Graceful-exit budget after SIGTERM (the Pod's terminationGracePeriodSeconds)."""
    drain_rate: float = 50.0
    """Members/s moved to other servers during a graceful exit (the fleet's transfer rate)."""
    credentials: CredentialStore = field(default_factory=CredentialStore)
    """Member digest credentials (realm -> user -> algorithm -> HA1), docs/security.md."""
    credentials_file: str = ""
    """Where `credentials` were read from; re-read when it changes. Empty: none."""
    default_policy: str = "auto"
    """Policy of a group the operator set none for: open, authenticated, or auto
    (authenticated when `credentials` has the domain's realm, else open)."""
    nonce_seconds: float = 300.0
    """How long a digest nonce stays valid (RFC 7616 3.3); then the answer is stale=true."""
    lockout_failures: int = 10
    """Authentication failures within a minute that lock a source out."""
    lockout_seconds: float = 300.0
    """How long a locked-out source's requests are dropped."""
    trusted_proxies: str = ""
    """Comma-separated IP addresses of edge proxies or SBCs that carry many members
    (docs/install.md, "Reaching the fleet"): exempt from the per-source rate limit,
    and member authentication failures through them lock out the member behind
    them (source and From AOR), never the proxy's whole address."""
    advertise_host: str = ""
    """The IP address members reach this server at, written into everything it sends
    them (Via, Contact, 302 Contact, Refer-To, shard URIs, SDP); "" = `listen`."""
    advertise_udp_port: int = 0
    """The UDP port members reach this server at (a NodePort, a host port); 0 = `sip_port`."""
    advertise_tcp_port: int = 0
    """The TCP port members reach this server at; 0 = `sip_port`."""
    tls_cert_file: str = ""
    """PEM certificate chain for TLS (`tls.crt` of a Secret); "" = no TLS, no wss."""
    tls_key_file: str = ""
    """PEM private key of `tls_cert_file` (`tls.key`)."""
    tls_port: int = 5061
    """SIP over TLS port (RFC 3261 26.2, sips:); 0 = a free one."""
    tls_ca_file: str = ""
    """Extra CAs (PEM) trusted when this server opens a TLS connection."""
    advertise_tls_port: int = 0
    """The TLS port members reach this server at; 0 = `tls_port`."""
    ws_port: int = 0
    """SIP over plain WebSocket port (RFC 7118 ws); 0 = off."""
    wss_port: int = 0
    """SIP over secure WebSocket port (wss, needs the TLS certificate); 0 = off."""
    hosted_file: str = ""
    """Where the server keeps its groups and member counts (restore.Hosted), in a
    directory that outlives the process but not the Pod (the Pod's emptyDir): a
    process that finds it at start is a restart and answers 503, not 404, for its
    groups until they are back. "" = none (every start is a fresh server)."""
    expected_groups_file: str = ""
    """A file (restore.Hosted, member counts 0) naming the groups the operator
    expects a *new* Pod of this server to host: the main server's Pod after a
    rollout or an eviction, whose emptyDir starts empty. With no hosted file at
    start, the server answers 503 for these groups until they are back, as a
    restart does. Empty or "": none."""
    s2s_transport: str = "tcp"
    """How requests to the fleet's other servers travel: tcp, or tls (their TLS port,
    certificates checked against `tls_ca_file`)."""

    @property
    def tls(self) -> TlsSettings | None:
        """The TLS settings, None when no certificate is configured."""
        if not self.tls_cert_file:
            return None
        return TlsSettings(self.tls_cert_file, self.tls_key_file, self.tls_port, self.tls_ca_file)

    @property
    def trusted_sources(self) -> frozenset[str]:
        """`trusted_proxies` as a set of addresses."""
        return frozenset(a.strip() for a in self.trusted_proxies.split(",") if a.strip())

    @property
    def access_default(self) -> AccessPolicy:
        """The AccessPolicy `default_policy` stands for."""
        if self.default_policy == "open":
            return OPEN
        if self.default_policy == "authenticated" or self.credentials.entries.get(
            self.domain.lower()
        ):
            return SECURE_DEFAULT
        return OPEN

    def __post_init__(self) -> None:
        if self.role not in ("main", "node"):
            raise ConfigError(f"role {self.role!r} is not 'main' or 'node'")
        if not self.name or any(c in self.name for c in ' @:;<>"/'):
            raise ConfigError(f'name {self.name!r} must be non-empty without spaces or @:;<>"/')
        if not self.domain:
            raise ConfigError("domain is empty: pass --domain (e.g. example.com)")
        try:
            addr = ipaddress.ip_address(self.listen)
        except ValueError:
            raise ConfigError(f"listen address {self.listen!r} is not an IP address") from None
        if not addr.is_loopback and not addr.is_private and not addr.is_unspecified:
            raise ConfigError(f"listen address {self.listen!r} must be loopback or private")
        if self.advertise_host:
            try:
                ipaddress.ip_address(self.advertise_host)
            except ValueError:
                raise ConfigError(
                    f"advertised address {self.advertise_host!r} is not an IP address"
                ) from None
        for label, port in (
            ("sip port", self.sip_port),
            ("admin port", self.admin_port),
            ("advertised UDP port", self.advertise_udp_port),
            ("advertised TCP port", self.advertise_tcp_port),
            ("TLS port", self.tls_port),
            ("advertised TLS port", self.advertise_tls_port),
            ("ws port", self.ws_port),
            ("wss port", self.wss_port),
        ):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{label} {port} is outside 0..65535")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("TLS needs both --tls-cert-file and --tls-key-file")
        if self.s2s_transport not in ("tcp", "tls"):
            raise ConfigError(
                f"server-to-server transport {self.s2s_transport!r} is not tcp or tls"
            )
        if self.s2s_transport == "tls" and not self.tls_cert_file:
            raise ConfigError("--s2s-transport tls needs the TLS certificate (--tls-cert-file)")
        if self.wss_port and not self.tls_cert_file:
            raise ConfigError("--wss-port needs the TLS certificate (--tls-cert-file)")
        if not self.token:
            raise ConfigError("the token is empty: write a non-empty token into the token file")
        if self.tree_fanout < 1:
            raise ConfigError(f"tree fanout {self.tree_fanout} must be at least 1")
        if not isinstance(self.sender_display, SenderDisplay):
            raise ConfigError(
                f"sender display {self.sender_display!r} is not one of "
                + ", ".join(m.value for m in SenderDisplay)
            )
        if self.shutdown_seconds < 0:
            raise ConfigError(f"shutdown budget {self.shutdown_seconds} s must not be negative")
        if self.drain_rate <= 0:
            raise ConfigError(f"drain rate {self.drain_rate} members/s must be > 0")
        if self.default_policy not in ("auto", "open", "authenticated"):
            raise ConfigError(
                f"default policy {self.default_policy!r} is not auto, open or authenticated"
            )
        if self.lockout_failures < 1 or self.lockout_seconds <= 0:
            raise ConfigError("lockout needs failures >= 1 and seconds > 0")
        if self.nonce_seconds <= 0:
            raise ConfigError(f"nonce lifetime {self.nonce_seconds} s must be > 0")
        for address in self.trusted_sources:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(
                    f"trusted proxy {address!r} is not an IP address (list them comma-separated)"
                ) from None
        if self.rate_limit <= 0 or self.rate_burst < 1:
            raise ConfigError("rate limit must be > 0 requests/s and burst >= 1")
