"""tls.Certificates: a pair that does not load is refused at start and at reload, and
the live context changes only for a usable new pair; tls.ServerSession runs a real
handshake in memory (certificates made with openssl)."""

from __future__ import annotations

import contextlib
import shutil
import ssl
from pathlib import Path

import pytest
from sipfleet.node.tls import Certificates, ServerSession, TlsError, TlsSettings
from tls_certs import TestCa, client_context


def settings_in(directory: Path) -> TlsSettings:
    return TlsSettings(str(directory / "tls.crt"), str(directory / "tls.key"), 0)


def install(source: Path, live: Path) -> None:
    """Copy a pair into the live directory (new inodes, as a Secret update makes)."""
    for name in ("tls.crt", "tls.key"):
        (live / name).unlink(missing_ok=True)
        shutil.copy(source / name, live / name)


def test_a_pair_that_does_not_match_is_refused_at_start(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    one, _ = ca.issue("one")
    two, _ = ca.issue("two")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(one, live / "tls.crt")
    shutil.copy(two.parent / "tls.key", live / "tls.key")
    with pytest.raises(TlsError, match="cannot use certificate"):
        Certificates(settings_in(live))


def test_reload_only_for_a_changed_usable_pair(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    one, _ = ca.issue("one")
    two, _ = ca.issue("two")
    live = tmp_path / "live"
    live.mkdir()
    install(one.parent, live)
    certificates = Certificates(settings_in(live))
    context = certificates.server
    assert not certificates.reload_if_changed()  # nothing changed

    install(two.parent, live)
    assert certificates.reload_if_changed()
    assert certificates.reloads == 1 and certificates.server is context  # loaded in place
    assert not certificates.reload_if_changed()

    (live / "tls.key").unlink()
    shutil.copy(one.parent / "tls.key", live / "tls.key")  # two's certificate, one's key
    assert not certificates.reload_if_changed()
    assert certificates.reloads == 1

    install(one.parent, live)  # fixed: taken at the next change
    assert certificates.reload_if_changed() and certificates.reloads == 2


def test_server_session_handshakes_and_carries_bytes_both_ways(tmp_path: Path) -> None:
    """ServerSession against Python's own TLS client, in memory (no sockets)."""
    ca = TestCa(tmp_path / "ca")
    crt, _ = ca.issue("server")
    server = ServerSession(Certificates(settings_in(crt.parent)).server)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(ca).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    received = b""
    for _ in range(10):  # a few round trips finish any handshake
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        received += server.receive(outgoing.read())
        incoming.write(server.outgoing())
        if server.established and client.version() is not None:
            break
    assert server.established and received == b""
    client.write(b"OPTIONS sip:x@y SIP/2.0\r\n\r\n")
    assert server.receive(outgoing.read()) == b"OPTIONS sip:x@y SIP/2.0\r\n\r\n"
    incoming.write(server.send(b"SIP/2.0 200 OK\r\n\r\n"))
    assert client.read() == b"SIP/2.0 200 OK\r\n\r\n"


def test_server_session_refuses_clear_text(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    crt, _ = ca.issue("server")
    server = ServerSession(Certificates(settings_in(crt.parent)).server)
    with pytest.raises(ssl.SSLError):
        server.receive(b"OPTIONS sip:x@y SIP/2.0\r\nContent-Length: 0\r\n\r\n")
