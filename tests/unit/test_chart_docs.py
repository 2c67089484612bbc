"""docs/crd-reference.md is generated from crds/ and is up to date."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml
from chart_support import REPO, mermaid_dir

GENERATOR = REPO / "docs" / "gen_crd_reference.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_crd_reference", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_reference_matches_the_crds() -> None:
    assert _generator().main(["--check"]) == 0, "run: python docs/gen_crd_reference.py"


def test_every_spec_field_is_documented() -> None:
    text = (REPO / "docs" / "crd-reference.md").read_text()
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for name in spec["properties"]:
            assert f"`.spec.{name}`" in text, f"{crd['spec']['names']['kind']}.spec.{name}"


def test_check_fails_on_a_stale_reference(tmp_path: Path) -> None:
    gen = _generator()
    stale = tmp_path / "crd-reference.md"
    stale.write_text(gen.render().replace("SipConference", "SipConf", 1))
    assert gen.main(["--check"], output=stale) == 1


def test_mermaid_diagrams_parse() -> None:
    docs = [p for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] if p.is_file()]
    with_diagrams = [str(p) for p in docs if "```mermaid" in p.read_text()]
    assert str(REPO / "docs" / "architecture.md") in with_diagrams
    proc = subprocess.run(
        ["node", "--input-type=module", "-", *with_diagrams],
        input=(REPO / "docs" / "check_mermaid.mjs").read_text(),
        cwd=mermaid_dir(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
