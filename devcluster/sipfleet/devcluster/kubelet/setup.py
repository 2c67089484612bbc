"""Everything a Pod needs before its containers start.

Secrets and ConfigMaps are fetched, ServiceAccount tokens requested through
the TokenRequest API (bound to the Pod), volumes and the Pod's kubeconfig
written, and each container's argv / environment / working dir resolved.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from sipfleet.devcluster.kubeconfig import write_token_kubeconfig
from sipfleet.devcluster.kubelet import env as envmod
from sipfleet.devcluster.kubelet.api import TRANSIENT_ERRORS, Api, ApiError
from sipfleet.devcluster.kubelet.container import ContainerPlan
from sipfleet.devcluster.kubelet.images import UnsupportedImage, container_argv, resolve_executable
from sipfleet.devcluster.kubelet.volumes import (
    VolumeError,
    container_mounts,
    materialise,
    token_audiences,
)

HOST_IP = "127.0.0.1"
TOKEN_SECONDS = 3600
# Errors that leave a Pod waiting (CreateContainerConfigError) and are retried.
SETUP_ERRORS = (envmod.EnvError, VolumeError, UnsupportedImage, *TRANSIENT_ERRORS)
PROBES = (
    ("readiness", "readinessProbe"),
    ("liveness", "livenessProbe"),
    ("startup", "startupProbe"),
)


def _decode(data: dict[str, str] | None, b64: bool) -> dict[str, str]:
    if not data:
        return {}
    if not b64:
        return dict(data)
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}


def automount(pod: dict[str, Any]) -> bool:
    return pod["spec"].get("automountServiceAccountToken", True) is not False


def service_account(pod: dict[str, Any]) -> str:
    return str(pod["spec"].get("serviceAccountName") or "default")


class PodSetup:
    def __init__(self, api: Api, pod_path: str, pod_dir: Path) -> None:
        self.api = api
        self.pod_path = pod_path
        self.dir = pod_dir
        self.objects = envmod.Objects()  # as last fetched by write_files

    @property
    def kubeconfig_path(self) -> Path:
        return self.dir / "kubeconfig"

    async def prepare(
        self, pod: dict[str, Any], pod_ip: str
    ) -> tuple[list[ContainerPlan], list[ContainerPlan]]:
        """Write the Pod's files; return the plans of its containers and init containers."""
        volumes = await self.write_files(pod, pod_ip)
        spec = pod["spec"]
        return (
            [self.plan(pod, pod_ip, c, volumes) for c in spec.get("containers") or []],
            [self.plan(pod, pod_ip, c, volumes) for c in spec.get("initContainers") or []],
        )

    async def _fetch(
        self, namespace: str, kind: str, names: set[str]
    ) -> dict[str, dict[str, str] | None]:
        found: dict[str, dict[str, str] | None] = {}
        for name in sorted(names):
            try:
                obj = await self.api.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")
            except ApiError as err:
                if err.status != 404:
                    raise
                found[name] = None
                continue
            if kind == "secrets":
                found[name] = _decode(obj.get("data"), b64=True)
            else:
                found[name] = {
                    **_decode(obj.get("data"), b64=False),
                    **_decode(obj.get("binaryData"), b64=True),
                }
        return found

    async def _token(self, pod: dict[str, Any], audience: str) -> str:
        meta = pod["metadata"]
        spec: dict[str, Any] = {
            "expirationSeconds": TOKEN_SECONDS,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        path = (
            f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{service_account(pod)}/token"
        )
        result = await self.api.post(path, body)
        return str(result["status"]["token"])

    async def write_files(self, pod: dict[str, Any], pod_ip: str) -> dict[str, Path]:
        """Fetch objects and tokens, write volumes and the kubeconfig; volume name -> dir.

        Also called periodically to refresh the tokens before they expire.
        """
        namespace = pod["metadata"]["namespace"]
        secret_names, configmap_names = envmod.referenced_objects(pod)
        self.objects = envmod.Objects(
            secrets=await self._fetch(namespace, "secrets", secret_names),
            configmaps=await self._fetch(namespace, "configmaps", configmap_names),
        )
        audiences = token_audiences(pod)
        if automount(pod):
            audiences.add("")
        tokens = {audience: await self._token(pod, audience) for audience in sorted(audiences)}
        facts = envmod.PodFacts(pod, pod_ip, HOST_IP)
        volumes = materialise(pod, self.dir, facts, self.objects, tokens)
        if automount(pod):
            write_token_kubeconfig(
                self.kubeconfig_path,
                self.api.server,
                self.api.ca_pem,
                tokens[""],
                f"system:serviceaccount:{namespace}:{service_account(pod)}",
            )
        return volumes

    def plan(
        self, pod: dict[str, Any], pod_ip: str, container: dict[str, Any], volumes: dict[str, Path]
    ) -> ContainerPlan:
        """Resolve one container: argv ($(VAR), mount paths, PATH lookup), env, cwd."""
        facts = envmod.PodFacts(pod, pod_ip, HOST_IP)
        mounts = container_mounts(container, volumes)
        own = envmod.container_env(container, facts, self.objects)
        own = {k: envmod.rewrite_path(v, mounts) for k, v in own.items()}
        process_env = {
            "PATH": self.pod_path,
            "HOME": os.environ.get("HOME", "/"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOSTNAME": pod["metadata"]["name"],
        }
        if automount(pod):
            process_env["KUBECONFIG"] = str(self.kubeconfig_path)
        process_env.update(own)

        def command(items: list[str]) -> list[str]:
            argv = [envmod.rewrite_path(envmod.expand(a, own), mounts) for a in items]
            return [resolve_executable(argv[0], self.pod_path), *argv[1:]]

        exec_probes = {
            kind: command(list(container[key]["exec"]["command"]))
            for kind, key in PROBES
            if "exec" in (container.get(key) or {})
        }
        workdir = container.get("workingDir")
        return ContainerPlan(
            spec=container,
            argv=command(container_argv(container, self.pod_path)),
            env=process_env,
            cwd=envmod.rewrite_path(workdir, mounts) if workdir else str(self.dir),
            log_path=self.dir / f"{container['name']}.log",
            record_path=self.dir / f"{container['name']}.proc.json",
            exec_probe_argv=exec_probes,
        )
