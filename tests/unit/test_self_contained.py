"""The repository tests itself alone: nothing reads files from beside the clone
(issue 8 item 9: RFC 4475's messages were read from the workspace's shared folder
beside the clone)."""

from __future__ import annotations

import re
from pathlib import Path

THIS = Path(__file__).resolve()
ROOT = THIS.parents[2]
# A path out of the repository: the sibling shared folder, one joined onto a parent of
# the repo, or the absolute path of the workspace the project was written in.
OUTSIDE = re.compile(r"\.\./shared|/ *\"shared\"|/work/shared")
SCANNED = ("tests", "bench", "scripts", ".ci", "sip-node", "operator", "demo", "devcluster")
SKIP = {".venv", ".git", "__pycache__", "data", "results", ".mypy_cache", ".ruff_cache"}
SUFFIXES = {".py", ".sh", ".xml", ".cfg", ".toml", ".yaml", ".yml", ""}


def _files() -> list[Path]:
    found = [ROOT / "Makefile", ROOT / "pyproject.toml"]
    for top in SCANNED:
        for path in (ROOT / top).rglob("*"):
            inside = SKIP.isdisjoint(path.relative_to(ROOT).parts)
            if inside and path.suffix in SUFFIXES and path.is_file() and path != THIS:
                found.append(path)
    return found


def test_no_file_reads_from_outside_the_repository() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in _files()
        if OUTSIDE.search(path.read_text(errors="replace"))
    ]
    assert not offenders, f"these read data from outside the clone: {offenders}"


def test_rfc4475_messages_are_in_the_repository() -> None:
    data = ROOT / "tests" / "data" / "rfc4475"
    assert len(list(data.glob("*.dat"))) == 49
    readme = (data / "README.md").read_text()
    assert "RFC 4475" in readme and "IETF Trust" in readme
