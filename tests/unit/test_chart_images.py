"""images/Dockerfile: multi-stage, pinned slim base, non-root, no build tools at run time.

There is no container engine here, so the Dockerfile is checked as text; the
kind-e2e workflow builds and runs both images on GitHub Actions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from chart_support import CHART, REPO

DOCKERFILE = REPO / "images" / "Dockerfile"
TARGETS = {"node": "sipfleet-node", "operator": "sipfleet-operator"}
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "git", "curl", "wget")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    """Dockerfile lines with comments dropped and backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


def _stages() -> tuple[dict[str, str], dict[str, Stage]]:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in _logical_lines(DOCKERFILE.read_text()):
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            m = re.fullmatch(r"(\S+)(?: AS (\S+))?", rest, flags=re.IGNORECASE)
            assert m, f"cannot read FROM {rest}"
            base = re.sub(r"\$\{(\w+)\}", lambda a: args[a[1]], m[1])
            current = stages[m[2]] = Stage(m[2], base)
        else:
            assert current is not None, f"{op} before the first FROM"
            current.instructions.append((op, rest))
    return args, stages


def _lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it builds FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def test_base_image_is_slim_and_pinned() -> None:
    _, stages = _stages()
    external = {s.base for s in stages.values() if s.base not in stages}
    assert external, "no external base image"
    for base in external:
        assert "slim" in base, f"{base} is not a slim image"
        pinned_version = re.search(r":\d+\.\d+\.\d+", base)
        assert "@sha256:" in base or pinned_version, (
            f"{base} is pinned by neither digest nor version"
        )


def test_is_multi_stage_and_final_stages_only_copy_the_venv() -> None:
    _, stages = _stages()
    assert "build" in stages
    for target in TARGETS:
        chain = _lineage(stages, target)
        copies = [rest for s in chain for op, rest in s.instructions if op in ("COPY", "ADD")]
        assert copies == ["--from=build /opt/sipfleet /opt/sipfleet"], copies


@pytest.mark.parametrize("target", TARGETS)
def test_final_image_runs_as_non_root_without_build_tools(target: str) -> None:
    _, stages = _stages()
    chain = _lineage(stages, target)
    users = [rest for s in chain for op, rest in s.instructions if op == "USER"]
    assert users, f"{target} sets no USER"
    uid = users[0].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{target} runs as {users[0]!r}"
    # The chart's runAsUser is the image's user.
    assert f"runAsUser: {uid}" in (CHART / "values.yaml").read_text()
    runs = " ".join(rest for s in chain for op, rest in s.instructions if op == "RUN")
    assert "apt-get install" not in runs
    assert "pip uninstall --yes pip" in runs
    for tool in BUILD_TOOLS:
        assert not re.search(rf"\b{re.escape(tool)}\b", runs), f"{target} installs {tool}"


@pytest.mark.parametrize(("target", "command"), TARGETS.items())
def test_entrypoint_is_the_console_script(target: str, command: str) -> None:
    _, stages = _stages()
    entry = [rest for op, rest in stages[target].instructions if op == "ENTRYPOINT"]
    assert entry == [f'["{command}"]']
    scripts = (REPO / "pyproject.toml").read_text()
    assert f"{command} = " in scripts, f"pyproject.toml has no console script {command}"
