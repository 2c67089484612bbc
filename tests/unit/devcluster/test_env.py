import pytest
from sipfleet.devcluster.kubelet.env import (
    EnvError,
    Objects,
    PodFacts,
    container_env,
    expand,
    referenced_objects,
    rewrite_path,
)

POD = {
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "u1",
        "labels": {"app": "web"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "sipfleet-local", "serviceAccountName": "sa"},
}
FACTS = PodFacts(POD, "127.0.0.12")
OBJECTS = Objects(secrets={"s": {"token": "t0k"}}, configmaps={"c": {"a": "1", "b": "2"}})


def field(path: str) -> dict[str, object]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def test_downward_api_fields() -> None:
    container = {
        "env": [
            {"name": "NAME", **field("metadata.name")},
            {"name": "NS", **field("metadata.namespace")},
            {"name": "IP", **field("status.podIP")},
            {"name": "NODE", **field("spec.nodeName")},
            {"name": "APP", **field("metadata.labels['app']")},
            {"name": "NOTE", **field("metadata.annotations['note']")},
        ]
    }
    assert container_env(container, FACTS, OBJECTS) == {
        "NAME": "p",
        "NS": "ns",
        "IP": "127.0.0.12",
        "NODE": "sipfleet-local",
        "APP": "web",
        "NOTE": "hi",
    }
    with pytest.raises(EnvError, match="unsupported fieldRef"):
        container_env({"env": [{"name": "X", **field("status.phase")}]}, FACTS, OBJECTS)


def test_secret_and_configmap_refs_and_env_from() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "C_"}],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            {"name": "C_a", "value": "override"},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}},
            },
        ],
    }
    assert container_env(container, FACTS, OBJECTS) == {
        "C_a": "override",
        "C_b": "2",
        "TOKEN": "t0k",
    }


def test_missing_references_are_errors_naming_the_object() -> None:
    missing_key = {
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "z"}}}]
    }
    with pytest.raises(EnvError, match="key 'z' not found in configmap 'c'"):
        container_env(missing_key, FACTS, OBJECTS)
    missing = {"envFrom": [{"secretRef": {"name": "nope"}}]}
    with pytest.raises(EnvError, match="secret 'nope' not found"):
        container_env(missing, FACTS, Objects(secrets={"nope": None}))


def test_var_expansion() -> None:
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)", env) == "x-y"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(UNKNOWN)", env) == "$(UNKNOWN)"
    container = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)2"}]}
    assert container_env(container, FACTS, OBJECTS)["B"] == "12"


def test_paths_under_a_mount_are_rewritten() -> None:
    mounts = {"/etc/creds": "/state/pods/p/volumes/creds", "/etc/creds/deep": "/other"}
    assert rewrite_path("/etc/creds/token", mounts) == "/state/pods/p/volumes/creds/token"
    assert rewrite_path("/etc/creds", mounts) == "/state/pods/p/volumes/creds"
    assert rewrite_path("/etc/creds/deep/x", mounts) == "/other/x"  # longest mount wins
    assert rewrite_path("/etc/credsX/token", mounts) == "/etc/credsX/token"
    assert rewrite_path("--token-file=/etc/creds/t", mounts) == (
        "--token-file=/state/pods/p/volumes/creds/t"
    )
    assert rewrite_path("relative/etc/creds", mounts) == "relative/etc/creds"


def test_referenced_objects_cover_env_and_volumes() -> None:
    pod = {
        "spec": {
            "containers": [
                {
                    "envFrom": [{"secretRef": {"name": "s1"}}],
                    "env": [
                        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}
                    ],
                }
            ],
            "volumes": [
                {"name": "v", "secret": {"secretName": "s2"}},
                {"name": "w", "projected": {"sources": [{"configMap": {"name": "c2"}}]}},
            ],
        }
    }
    assert referenced_objects(pod) == ({"s1", "s2"}, {"c1", "c2"})
