"""Pod volumes as directories under the Pod's dir in the state dir.

Supported: emptyDir, secret, configMap, downwardAPI, projected (secret,
configMap, downwardAPI, serviceAccountToken) and hostPath (the host path
itself). Anything else is an error reported in the container status.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sipfleet.devcluster.kubelet.env import EnvError, Objects, PodFacts, field_ref


class VolumeError(ValueError):
    pass


def token_audiences(pod: dict[str, Any]) -> set[str]:
    """Audiences of projected serviceAccountToken sources ("" = the API server's)."""
    audiences: set[str] = set()
    for volume in pod.get("spec", {}).get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in source:
                audiences.add(source["serviceAccountToken"].get("audience", ""))
    return audiences


def _write(path: Path, content: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _write_keys(
    target: Path,
    kind: str,
    name: str,
    data: dict[str, str] | None,
    source: dict[str, Any],
) -> None:
    if data is None:
        if source.get("optional"):
            return
        raise VolumeError(f"{kind} {name!r} not found")
    mode = int(source.get("defaultMode", 0o644))
    items = source.get("items")
    if not items:
        for key, value in data.items():
            _write(target / key, value, mode)
        return
    for item in items:
        key = item["key"]
        if key not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"key {key!r} not found in {kind} {name!r}")
        _write(target / item["path"], data[key], int(item.get("mode", mode)))


def _write_downward(target: Path, facts: PodFacts, items: list[dict[str, Any]]) -> None:
    for item in items:
        if "fieldRef" not in item:
            raise VolumeError(f"downwardAPI item {item.get('path')!r}: only fieldRef is supported")
        try:
            value = field_ref(facts, item["fieldRef"]["fieldPath"])
        except EnvError as err:
            raise VolumeError(str(err)) from err
        _write(target / item["path"], value)


def _materialise_one(
    volume: dict[str, Any],
    target: Path,
    facts: PodFacts,
    objects: Objects,
    tokens: Mapping[str, str],
) -> Path:
    if "hostPath" in volume:
        return Path(volume["hostPath"]["path"])
    target.mkdir(parents=True, exist_ok=True)
    if "emptyDir" in volume:
        return target
    if "secret" in volume:
        src = volume["secret"]
        name = src.get("secretName", "")
        _write_keys(target, "secret", name, objects.secrets.get(name), src)
    elif "configMap" in volume:
        src = volume["configMap"]
        name = src.get("name", "")
        _write_keys(target, "configmap", name, objects.configmaps.get(name), src)
    elif "downwardAPI" in volume:
        _write_downward(target, facts, volume["downwardAPI"].get("items") or [])
    elif "projected" in volume:
        for source in volume["projected"].get("sources") or []:
            if "secret" in source:
                name = source["secret"].get("name", "")
                _write_keys(target, "secret", name, objects.secrets.get(name), source["secret"])
            elif "configMap" in source:
                name = source["configMap"].get("name", "")
                cm = objects.configmaps.get(name)
                _write_keys(target, "configmap", name, cm, source["configMap"])
            elif "downwardAPI" in source:
                _write_downward(target, facts, source["downwardAPI"].get("items") or [])
            elif "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                _write(target / sat["path"], tokens[sat.get("audience", "")], 0o600)
            else:
                raise VolumeError(f"volume {volume['name']!r}: unsupported projected source")
    else:
        kinds = sorted(k for k in volume if k != "name")
        raise VolumeError(f"volume {volume['name']!r}: unsupported type {kinds}")
    return target


def materialise(
    pod: dict[str, Any],
    pod_dir: Path,
    facts: PodFacts,
    objects: Objects,
    tokens: Mapping[str, str],
) -> dict[str, Path]:
    """Write every volume of `pod`; return volume name -> host directory."""
    return {
        volume["name"]: _materialise_one(
            volume, pod_dir / "volumes" / volume["name"], facts, objects, tokens
        )
        for volume in pod.get("spec", {}).get("volumes") or []
    }


def container_mounts(container: dict[str, Any], volumes: Mapping[str, Path]) -> dict[str, str]:
    """mountPath -> host path for one container (subPath honoured)."""
    mounts: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        name = mount["name"]
        if name not in volumes:
            raise VolumeError(f"volumeMount {name!r} names no volume of the pod")
        host = volumes[name]
        sub = mount.get("subPath")
        if sub:
            host = host / sub
        mounts[mount["mountPath"]] = str(host)
    return mounts
