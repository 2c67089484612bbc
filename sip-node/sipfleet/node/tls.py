"""TLS for SIP (RFC 3261 26.2, 18; RFC 5630): certificates from files, reloaded live.

The certificate and key come from files mounted from a Kubernetes Secret
(`tls.crt`, `tls.key`, as cert-manager writes them). `Certificates` owns one
server `ssl.SSLContext` for every TLS listener (SIP over TLS, WebSocket over
TLS). When the files change, the new pair is first loaded into a scratch
context (so a half-written or mismatched pair is refused and the old one
stays), then into the live context: OpenSSL copies a context's certificate
into each connection when the connection is made, so connections already up
keep theirs (and their dialogs), and every new handshake gets the new one.

Outbound TLS connections to a member's `sips:` Contact verify its certificate
against the system's CAs plus `ca_file`, and the address they connect to (an
IP address SAN). Connections to the fleet's other servers (server-to-server
TLS, an option) verify the certificate against `ca_file` only (the fleet's CA)
without an address check: a server's Pod IP is not known when its certificate
is issued, and server-to-server requests carry their own HMAC (s2s_auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from sipfleet.node.filewatch import signature

log = logging.getLogger(__name__)

RELOAD_SECONDS = 2.0
"""How often the certificate files are looked at."""


class TlsError(ValueError):
    """The certificate or key cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Where the TLS certificate and key are, and the port to listen on for SIP over
    TLS. `ca_file` (PEM, may be "") adds CAs trusted for outbound connections."""

    cert_file: str
    key_file: str
    port: int = 5061
    ca_file: str = ""


def _load(context: ssl.SSLContext, settings: TlsSettings) -> None:
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"cannot use certificate {settings.cert_file} with key {settings.key_file}: {exc}"
        ) from exc


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    return context


class ServerSession:
    """The server side of one TLS connection over memory BIOs: bytes from the peer
    in, application bytes out, and the TLS records to send back (`outgoing`). The
    transport accepts a TCP connection, counts and bounds it like any other, and
    runs the handshake through this, so a connection that never finishes its
    handshake is held to the same limits (per source, deadline) as a silent TCP one.
    The session takes the certificate its context has when it is made."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        self.established = False

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the peer; return the application bytes they complete (b""
        during the handshake). Raises ssl.SSLError for a failed handshake or a bad
        record."""
        self._in.write(data)
        if not self.established:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.established = True
        chunks = []
        while True:
            try:
                chunk = self._tls.read(1 << 16)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):  # more to come, close_notify
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, data: bytes) -> bytes:
        """The TLS records carrying `data` (after the handshake), with any record the
        session still had to send."""
        self._tls.write(data)
        return self._out.read()

    def outgoing(self) -> bytes:
        """TLS records waiting to be sent (handshake messages, session tickets)."""
        return self._out.read()


class Certificates:
    """The server certificate of this process and the contexts built from it.

    Raises TlsError at construction when the files cannot be used."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self.server = _server_context()
        _load(self.server, settings)
        try:
            self.client = ssl.create_default_context(cafile=settings.ca_file or None)
            self.peers = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.peers.check_hostname = False  # CERT_REQUIRED stays: the chain is checked
            if settings.ca_file:
                self.peers.load_verify_locations(settings.ca_file)
            else:
                self.peers.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot use CA file {settings.ca_file}: {exc}") from exc
        for context in (self.client, self.peers):
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._seen = self._signatures()
        self.reloads = 0

    def _signatures(self) -> tuple[object, ...]:
        return (signature(Path(self.settings.cert_file)), signature(Path(self.settings.key_file)))

    def reload_if_changed(self) -> bool:
        """Load the files into the live server context if they changed since the last
        look and the new pair is usable; True when a new certificate is in force.
        A pair that fails to load is logged, the old certificate stays, and the pair
        is tried again at the next change."""
        now = self._signatures()
        if now == self._seen:
            return False
        self._seen = now
        try:
            _load(_server_context(), self.settings)  # refuse a bad pair before going live
            _load(self.server, self.settings)
        except TlsError as exc:
            log.warning("TLS certificate not reloaded, keeping the old one: %s", exc)
            return False
        self.reloads += 1
        log.info("TLS certificate %s reloaded", self.settings.cert_file)
        return True

    async def watch(self, interval: float = RELOAD_SECONDS) -> None:
        """Run until cancelled: reload the certificate each time its files change
        (a Secret update swaps them under the mount), every `interval` seconds."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(interval)
                self.reload_if_changed()
