"""Container plans: argv, environment and working dir of a local process."""

from pathlib import Path
from typing import Any, cast

import pytest
from sipfleet.devcluster.kubelet.api import Api
from sipfleet.devcluster.kubelet.env import Objects
from sipfleet.devcluster.kubelet.images import UnsupportedImage
from sipfleet.devcluster.kubelet.setup import PodSetup


def make_pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": spec}


@pytest.fixture
def setup(tmp_path: Path) -> PodSetup:
    tool = tmp_path / "bin" / "sipfleet-node"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    ps = PodSetup(cast(Api, None), f"{tool.parent}:/usr/bin:/bin", tmp_path / "pod")
    ps.objects = Objects(secrets={"admin": {"token": "t"}})
    return ps


def test_image_command_args_env_and_paths(setup: PodSetup, tmp_path: Path) -> None:
    container = {
        "name": "node",
        "image": "sipfleet/node:dev",
        "args": ["--listen", "$(POD_IP)", "--token-file=/var/run/admin/token"],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "SIPFLEET_TOKEN_FILE", "value": "/var/run/admin/token"},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "admin", "key": "token"}}},
        ],
        "volumeMounts": [{"name": "admin", "mountPath": "/var/run/admin"}],
        "readinessProbe": {"exec": {"command": ["sipfleet-node", "--check", "/var/run/admin"]}},
    }
    volumes = {"admin": tmp_path / "pod" / "volumes" / "admin"}
    plan = setup.plan(make_pod(), "127.0.0.10", container, volumes)
    host = str(volumes["admin"])
    assert plan.argv == [
        str(tmp_path / "bin" / "sipfleet-node"),
        "--listen",
        "127.0.0.10",
        f"--token-file={host}/token",
    ]
    assert plan.env["SIPFLEET_TOKEN_FILE"] == f"{host}/token"
    assert plan.env["SECRET"] == "t"
    assert plan.env["HOSTNAME"] == "p"
    assert plan.env["KUBECONFIG"] == str(tmp_path / "pod" / "kubeconfig")
    assert plan.env["PATH"].startswith(str(tmp_path / "bin"))
    assert plan.exec_probe_argv["readiness"][-1] == host
    assert plan.cwd == str(tmp_path / "pod")
    assert plan.log_path == tmp_path / "pod" / "node.log"


def test_no_kubeconfig_without_automount(setup: PodSetup) -> None:
    container = {"name": "c", "image": "x", "command": ["sipfleet-node"]}
    plan = setup.plan(make_pod(automountServiceAccountToken=False), "127.0.0.10", container, {})
    assert "KUBECONFIG" not in plan.env


def test_unknown_image_without_command_is_refused(setup: PodSetup) -> None:
    with pytest.raises(UnsupportedImage, match="redis"):
        setup.plan(make_pod(), "127.0.0.10", {"name": "c", "image": "redis:7"}, {})
