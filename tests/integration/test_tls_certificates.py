"""tls.Certificates: a pair that does not load is refused at start and at reload, and
the live context changes only for a usable new pair (certificates made with openssl)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sipfleet.node.tls import Certificates, TlsError, TlsSettings
from tls_certs import TestCa


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
