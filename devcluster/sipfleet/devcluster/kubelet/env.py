"""A container's environment, and the rewriting of in-container paths.

Pure functions: Secrets and ConfigMaps are fetched beforehand (see
``referenced_objects``) and passed in as plain dicts of decoded strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# $(VAR) is expanded from earlier variables; $$(VAR) is an escaped literal.
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class EnvError(ValueError):
    """A reference cannot be resolved (reported as CreateContainerConfigError)."""


@dataclass(frozen=True)
class PodFacts:
    """What the downward API can expose about a Pod."""

    pod: dict[str, Any]
    pod_ip: str
    host_ip: str = "127.0.0.1"


@dataclass
class Objects:
    """Secrets and ConfigMaps by name, values already decoded; None = does not exist."""

    secrets: dict[str, dict[str, str] | None] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str] | None] = field(default_factory=dict)


def field_ref(facts: PodFacts, path: str) -> str:
    meta = facts.pod.get("metadata", {})
    spec = facts.pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
    }
    if path in simple:
        return str(simple[path])
    match = _FIELD_KEY.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise EnvError(f"unsupported fieldRef {path!r}")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion; unknown variables are left as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(sub, value)


def _lookup(objects: Objects, kind: str, ref: dict[str, Any]) -> str | None:
    table = objects.secrets if kind == "secret" else objects.configmaps
    name, key = ref.get("name", ""), ref.get("key", "")
    data = table.get(name)
    optional = bool(ref.get("optional", False))
    if data is None:
        if optional:
            return None
        raise EnvError(f"{kind} {name!r} not found")
    if key not in data:
        if optional:
            return None
        raise EnvError(f"key {key!r} not found in {kind} {name!r}")
    return data[key]


def container_env(container: dict[str, Any], facts: PodFacts, objects: Objects) -> dict[str, str]:
    """envFrom first, then env (later entries win), with $(VAR) expansion."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("secret", "secretRef"), ("configmap", "configMapRef")):
            ref = source.get(key)
            if ref is None:
                continue
            table = objects.secrets if kind == "secret" else objects.configmaps
            data = table.get(ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f"{kind} {ref.get('name')!r} not found")
            env.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        source = item.get("valueFrom")
        if not source:
            env[name] = ""
        elif "fieldRef" in source:
            env[name] = field_ref(facts, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "secret" if "secretKeyRef" in source else "configmap"
            value = _lookup(objects, kind, source.get("secretKeyRef") or source["configMapKeyRef"])
            if value is not None:
                env[name] = value
        else:
            raise EnvError(f"env {name!r}: unsupported valueFrom {sorted(source)}")
    return env


def referenced_objects(pod: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Names of the Secrets and ConfigMaps a Pod's env and volumes refer to."""
    secrets: set[str] = set()
    configmaps: set[str] = set()
    spec = pod.get("spec", {})
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for source in c.get("envFrom") or []:
            if "secretRef" in source:
                secrets.add(source["secretRef"].get("name", ""))
            if "configMapRef" in source:
                configmaps.add(source["configMapRef"].get("name", ""))
        for item in c.get("env") or []:
            value_from = item.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"].get("name", ""))
            if "configMapKeyRef" in value_from:
                configmaps.add(value_from["configMapKeyRef"].get("name", ""))
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            secrets.add(volume["secret"].get("secretName", ""))
        if "configMap" in volume:
            configmaps.add(volume["configMap"].get("name", ""))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                secrets.add(source["secret"].get("name", ""))
            if "configMap" in source:
                configmaps.add(source["configMap"].get("name", ""))
    return secrets, configmaps


def rewrite_path(value: str, mounts: Mapping[str, str]) -> str:
    """Map an in-container path onto the host directory of its volumeMount.

    Applies when `value` starts with a mountPath (whole path components only),
    or is ``--flag=<path>``. The longest matching mountPath wins.
    """
    head, sep, tail = "", "", value
    if value.startswith("-") and "=" in value:
        head, sep, tail = value.partition("=")
    for mount in sorted(mounts, key=len, reverse=True):
        prefix = mount.rstrip("/")
        if tail == prefix or tail.startswith(prefix + "/"):
            return head + sep + mounts[mount] + tail[len(prefix) :]
    return value
