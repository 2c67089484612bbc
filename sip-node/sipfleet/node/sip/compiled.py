"""The SIP core compiled with mypyc, when a build for these exact sources exists.

The Python sources in this package are the reference and always work alone.
`scripts/build_mypyc.py` (run by `make venv`) compiles them with mypyc into
`$SIPFLEET_CACHE/mypyc/<key>/` (default `~/.cache/sipfleet/mypyc/<key>/`),
outside the repository, where `<key>` hashes the sources, the interpreter and
`BUILD_VERSION`. `activate` (run when the package's `__init__` imports this
module, before any other module of the package) puts that build ahead of the
sources on the package's `__path__` when it is there and complete, so an edited
source never runs as a stale compiled copy: its key changes and the pure Python
runs until the next build. `SIPFLEET_PURE_PYTHON=1` keeps the pure Python even when a build exists
(the reference run of the tests, a comparison in the benchmark).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import MutableSequence
from pathlib import Path

BUILD_VERSION = "1"
"""Bump when the build recipe (scripts/build_mypyc.py) changes."""
PURE_ENV = "SIPFLEET_PURE_PYTHON"
PACKAGE_DIR = Path(__file__).resolve().parent
NOT_COMPILED = frozenset({"__init__", "compiled"})
"""Modules that stay Python: the package entry and this loader."""

ACTIVE = False
"""True once `activate` put a compiled build on the package's path."""


def modules() -> list[str]:
    """Names of the modules that get compiled (every module of the package but
    `NOT_COMPILED`), sorted."""
    return sorted(p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem not in NOT_COMPILED)


def build_key() -> str:
    """Hash of what a build depends on: the compiled modules' sources, the
    interpreter (version and ABI) and `BUILD_VERSION`. 16 hex digits."""
    digest = hashlib.sha256(f"{BUILD_VERSION}\0{sys.version}\0{sys.abiflags}\0".encode())
    for name in modules():
        digest.update(name.encode() + b"\0")
        digest.update((PACKAGE_DIR / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


def build_dir(key: str | None = None) -> Path:
    """Where the build for `key` (default: the current sources') lives."""
    override = os.environ.get("SIPFLEET_CACHE")
    root = Path(override) if override else Path.home() / ".cache" / "sipfleet"
    return root / "mypyc" / (key or build_key())


def activate(package_path: MutableSequence[str]) -> bool:
    """Put the compiled build for the current sources first on `package_path`
    (the package's `__path__`) and its shared runtime library on `sys.path`;
    False (pure Python) when `SIPFLEET_PURE_PYTHON` is set, or no complete build
    for these sources exists, or it cannot be read."""
    global ACTIVE
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return False
    try:
        where = build_dir()
        complete = (where / "complete").is_file()
    except (OSError, RuntimeError):  # unreadable sources or cache, no home directory
        return False
    if not complete:
        return False
    package_path.insert(0, str(where / "modules"))
    sys.path.append(str(where / "lib"))
    ACTIVE = True
    return True


# Imported first by the package's __init__, before any module it would find here.
activate(sys.modules[__package__].__path__)
