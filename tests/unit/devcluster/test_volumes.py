from pathlib import Path

import pytest
from sipfleet.devcluster.kubelet.env import Objects, PodFacts
from sipfleet.devcluster.kubelet.volumes import (
    VolumeError,
    container_mounts,
    materialise,
    token_audiences,
)

OBJECTS = Objects(
    secrets={"s": {"token": "t0k", "other": "o"}, "absent": None},
    configmaps={"c": {"conf.yaml": "a: 1"}},
)


def pod_with(*volumes: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"volumes": list(volumes)}}


def test_secret_configmap_and_empty_dir(tmp_path: Path) -> None:
    pod = pod_with(
        {"name": "s", "secret": {"secretName": "s"}},
        {"name": "only", "secret": {"secretName": "s", "items": [{"key": "token", "path": "a/t"}]}},
        {"name": "c", "configMap": {"name": "c"}},
        {"name": "e", "emptyDir": {}},
    )
    dirs = materialise(pod, tmp_path, PodFacts(pod, "127.0.0.10"), OBJECTS, {})
    assert (dirs["s"] / "token").read_text() == "t0k"
    assert (dirs["s"] / "other").read_text() == "o"
    assert (dirs["only"] / "a" / "t").read_text() == "t0k"
    assert not (dirs["only"] / "other").exists()
    assert (dirs["c"] / "conf.yaml").read_text() == "a: 1"
    assert dirs["e"].is_dir() and not any(dirs["e"].iterdir())
    assert all(str(d).startswith(str(tmp_path)) for d in dirs.values())


def test_projected_token_ca_and_namespace(tmp_path: Path) -> None:
    pod = pod_with(
        {
            "name": "api",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"serviceAccountToken": {"path": "vault", "audience": "vault"}},
                    {"configMap": {"name": "c", "items": [{"key": "conf.yaml", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ]
            },
        }
    )
    assert token_audiences(pod) == {"", "vault"}
    dirs = materialise(pod, tmp_path, PodFacts(pod, "127.0.0.10"), OBJECTS, {"": "T", "vault": "V"})
    assert (dirs["api"] / "token").read_text() == "T"
    assert (dirs["api"] / "vault").read_text() == "V"
    assert (dirs["api"] / "ca.crt").read_text() == "a: 1"
    assert (dirs["api"] / "namespace").read_text() == "ns"


def test_missing_and_unsupported_volumes_are_errors(tmp_path: Path) -> None:
    facts = PodFacts(pod_with(), "127.0.0.10")
    with pytest.raises(VolumeError, match="secret 'absent' not found"):
        materialise(
            pod_with({"name": "x", "secret": {"secretName": "absent"}}),
            tmp_path,
            facts,
            OBJECTS,
            {},
        )
    optional = pod_with({"name": "x", "secret": {"secretName": "absent", "optional": True}})
    assert materialise(optional, tmp_path, facts, OBJECTS, {})["x"].is_dir()
    with pytest.raises(VolumeError, match="unsupported type"):
        materialise(pod_with({"name": "x", "nfs": {"server": "h"}}), tmp_path, facts, OBJECTS, {})


def test_mounts_honour_sub_path_and_reject_unknown_volumes(tmp_path: Path) -> None:
    volumes = {"data": tmp_path / "data"}
    container = {
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/etc/app.yaml", "subPath": "app.yaml"},
        ]
    }
    assert container_mounts(container, volumes) == {
        "/data": str(tmp_path / "data"),
        "/etc/app.yaml": str(tmp_path / "data" / "app.yaml"),
    }
    with pytest.raises(VolumeError, match="names no volume"):
        container_mounts({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, volumes)
