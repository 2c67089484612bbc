"""The mypyc build of the SIP core (sipfleet.node.sip.compiled, scripts/build_mypyc.py):
picked up only for the sources it was built from, and the other build (pure Python
when this run is compiled, compiled when a build exists and this run is pure) passes
the SIP core's own tests too: RFC 4475, the grammar, parser, transaction and
property tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sipfleet.node.sip import compiled

REPO = Path(__file__).resolve().parents[3]


def test_a_build_is_used_only_for_the_sources_it_was_built_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIPFLEET_CACHE", str(tmp_path))
    monkeypatch.delenv(compiled.PURE_ENV, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(compiled, "ACTIVE", compiled.ACTIVE)
    path: list[str] = ["src"]
    stale = tmp_path / "mypyc" / "0123456789abcdef"  # another source state's build
    stale.mkdir(parents=True)
    (stale / "complete").write_text("")
    assert not compiled.activate(path)
    assert path == ["src"]
    current = compiled.build_dir()
    assert current.parent == stale.parent and current != stale
    current.mkdir()
    assert not compiled.activate(path), "an unfinished build (no marker) is not used"
    (current / "complete").write_text("")
    monkeypatch.setenv(compiled.PURE_ENV, "1")
    assert not compiled.activate(path)
    monkeypatch.delenv(compiled.PURE_ENV)
    assert compiled.activate(path)
    assert path == [str(current / "modules"), "src"]
    assert sys.path[-1] == str(current / "lib")


def test_the_key_covers_every_compiled_module_and_only_them() -> None:
    names = compiled.modules()
    assert "parser" in names and "transaction" in names and "message" in names
    assert "__init__" not in names and "compiled" not in names
    assert len(compiled.build_key()) == 16


def test_the_other_build_passes_the_sip_core_tests() -> None:
    env = dict(os.environ)
    if compiled.ACTIVE:
        env[compiled.PURE_ENV] = "1"
        other = "pure Python"
    elif os.environ.get(compiled.PURE_ENV) and (compiled.build_dir() / "complete").is_file():
        env.pop(compiled.PURE_ENV)
        other = "compiled"
    else:
        pytest.skip("no mypyc build for these sources (make venv or scripts/build_mypyc.py)")
    files = [
        f"tests/unit/sip/{name}.py"
        for name in (
            "test_sip_rfc4475",
            "test_sip_grammar",
            "test_sip_parser",
            "test_sip_properties",
            "test_sip_transaction",
            "test_sip_validate",
            "test_sip_dialog",
            "test_sip_via",
        )
    ]
    probe = "from sipfleet.node.sip import compiled; print(compiled.ACTIVE)"
    active = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert active == str(other == "compiled")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, f"{other} build:\n{out.stdout[-3000:]}"
