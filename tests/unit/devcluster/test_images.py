from pathlib import Path

import pytest
from sipfleet.devcluster.kubelet.images import (
    UnsupportedImage,
    container_argv,
    image_command,
    repository,
    resolve_executable,
    search_path,
)


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("sipfleet/node", "sipfleet/node"),
        ("sipfleet/node:0.1", "sipfleet/node"),
        ("localhost:5000/sipfleet/node:dev", "localhost:5000/sipfleet/node"),
        ("sipfleet/node@sha256:abc", "sipfleet/node"),
    ],
)
def test_repository_strips_tag_and_digest(image: str, repo: str) -> None:
    assert repository(image) == repo


def test_images_map_to_console_scripts() -> None:
    assert image_command("sipfleet/node:1") == "sipfleet-node"
    assert image_command("ghcr.io/acme/sipfleet/operator:2") == "sipfleet-operator"
    assert image_command("notsipfleet/node") is None
    assert image_command("python:3") is None


def test_command_wins_over_image_and_args_are_appended() -> None:
    assert container_argv({"image": "x", "command": ["a"], "args": ["b"]}, "") == ["a", "b"]
    assert container_argv({"image": "sipfleet/node", "args": ["--role", "main"]}, "") == [
        "sipfleet-node",
        "--role",
        "main",
    ]
    with pytest.raises(UnsupportedImage, match="nginx"):
        container_argv({"image": "nginx"}, "")


def test_executables_are_found_on_the_pod_path_venv_first(tmp_path: Path) -> None:
    path = search_path(f"{tmp_path}:/usr/bin")
    assert path.split(":")[0].endswith("bin")
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert resolve_executable("tool", path) == str(tool)
    assert resolve_executable("/abs/prog", path) == "/abs/prog"
    with pytest.raises(UnsupportedImage, match="not found"):
        resolve_executable("no-such-tool-here", path)
