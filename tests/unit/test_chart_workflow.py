"""The GitHub Actions workflow is valid and builds, installs and tests what exists here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import EXTERNAL_KUBECONFIG, REPO, tool

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
KIND = REPO / ".github" / "workflows" / "kind-e2e.yml"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_accepts_the_workflow(workflow: Path) -> None:
    # actionlint also runs shellcheck over every `run:` script when it is installed.
    proc = subprocess.run(
        [str(tool("actionlint")), str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _steps() -> list[dict[str, object]]:
    jobs = yaml.safe_load(KIND.read_text())["jobs"]
    return [step for job in jobs.values() for step in job["steps"]]


def test_builds_both_image_targets_of_the_dockerfile() -> None:
    builds = [s["with"] for s in _steps() if str(s.get("uses", "")).startswith("docker/build-push")]
    assert {(b["file"], b["target"]) for b in builds} == {  # type: ignore[index]
        ("images/Dockerfile", "node"),
        ("images/Dockerfile", "operator"),
    }
    dockerfile = (REPO / "images" / "Dockerfile").read_text()
    for target in ("node", "operator"):
        assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, flags=re.MULTILINE)


def test_runs_the_chart_e2e_tests_on_kind() -> None:
    steps = _steps()
    assert any(str(s.get("uses", "")).startswith("helm/kind-action") for s in steps)
    (e2e,) = [s for s in steps if "tests/e2e/" in str(s.get("run", ""))]
    assert EXTERNAL_KUBECONFIG in e2e["env"]  # type: ignore[operator]
    tests = re.findall(r"tests/e2e/\S+\.py", str(e2e["run"]))
    assert {"tests/e2e/test_helm_install.py", "tests/e2e/test_helm_manifests.py"} <= set(tests)
    for path in tests:
        assert (REPO / path).is_file(), f"the workflow runs {path}, which does not exist"
    scripts = "\n".join(str(s.get("run", "")) for s in steps)
    assert "kind load docker-image" in scripts
    assert "make test" in scripts
