"""A small async facade over the official Kubernetes client, plain dicts in and out.

The official client is synchronous; each call runs in a worker thread so the
kopf event loop never blocks. Responses are decoded from JSON instead of
model objects, so the rest of the operator handles one shape: dicts as the
API server sends them. "Already exists" on create and "not found" on delete
count as success: every caller is an idempotent reconciler.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import kopf
import kubernetes
import urllib3

Obj = dict[str, Any]

KUBE_ERRORS: tuple[type[Exception], ...] = (
    kubernetes.client.ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
)
"""What a Kubernetes call raises when the API server refuses or cannot be reached."""


def configuration(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """Client settings from ``kubeconfig`` (else $KUBECONFIG, ~/.kube/config), else in-cluster.

    $KUBECONFIG is read now, not when the kubernetes package was imported.
    """
    cfg = kubernetes.client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, client_configuration=cfg
        )
    except kubernetes.config.ConfigException:
        if kubeconfig:
            raise
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=cfg
        )
    return cfg


KUBE_THREADS = 8
"""Worker threads for Kubernetes calls, and the size of the client's connection pool.

One connection per thread: urllib3 warns "connection pool is full" and
drops connections when more threads than pooled connections call at once.
"""
REQUEST_TIMEOUT = (5.0, 20.0)
"""(connect, read) seconds per Kubernetes call: a stuck call ends, so a worker
thread is never held forever and the process stops promptly on SIGTERM."""


def api_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    cfg = configuration(kubeconfig)
    cfg.connection_pool_maxsize = KUBE_THREADS
    return kubernetes.client.ApiClient(cfg)


def connection_info(kubeconfig: str | None = None) -> kopf.ConnectionInfo:
    """kopf's credentials from the same source as ``configuration`` (re-read on each login)."""
    try:
        cfg = configuration(kubeconfig)
    except kubernetes.config.ConfigException as exc:
        raise kopf.LoginError(f"no usable kubeconfig or in-cluster credentials: {exc}") from exc
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


KOPF_CONNECTIONS = 16
"""kopf's connections to the API server for requests (patches, Events), on top
of one per watch stream: a stream holds its connection while it runs, so a pool
no larger than the streams starves every patch (seen: ten watched namespaces,
20 streams, a pool of 16, and the operator did nothing for minutes).

kopf's default session has no limit: at startup 1,000 conferences' timers
patch at once, opening as many TLS connections; the API server times out
and the process keeps the memory of the burst (hundreds of MB). Queuing on
a bounded pool finishes sooner and stays small.
"""


def watch_streams(namespaces: int, resources: int = 3) -> int:
    """The watch streams kopf keeps open: one per resource (SipFleets,
    SipConferences, server Pods) and namespace (or one per resource
    cluster-wide, ``namespaces=0``), plus its CRD and namespace observers."""
    return resources * max(1, namespaces) + 2


def kopf_session(kubeconfig: str | None = None, *, streams: int = 0) -> kopf.AiohttpSession:
    """kopf's credentials (see ``connection_info``) in a session with a bounded pool:
    ``KOPF_CONNECTIONS`` for requests plus one for each of ``streams`` watch streams.

    Must be called on the event loop; kopf closes the session on re-login or exit.
    """
    info = connection_info(kubeconfig)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=KOPF_CONNECTIONS + streams, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
    )
    return kopf.AiohttpSession(server=info.server, aiohttp_session=session)


class Kube:
    """The few Kubernetes calls the operator makes (see operator/deploy/rbac.yaml)."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self._pool = ThreadPoolExecutor(KUBE_THREADS, thread_name_prefix="kube")
        self._core = kubernetes.client.CoreV1Api(client)
        self._coord = kubernetes.client.CoordinationV1Api(client)
        self._custom = kubernetes.client.CustomObjectsApi(client)
        self._policy = kubernetes.client.PolicyV1Api(client)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        call = functools.partial(
            fn, *args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs
        )
        resp = await asyncio.get_running_loop().run_in_executor(self._pool, call)
        data: Obj = json.loads(resp.data)
        return data

    def close(self) -> None:
        """Stop the worker threads (calls in flight end by their timeout)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _get_or_none(self, fn: Callable[..., Any], *args: Any) -> Obj | None:
        try:
            return await self._call(fn, *args)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _create_or_existing(
        self, create: Callable[..., Any], read: Callable[..., Any], namespace: str, body: Obj
    ) -> Obj:
        try:
            return await self._call(create, namespace, body)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            return await self._call(read, body["metadata"]["name"], namespace)

    # Secrets -----------------------------------------------------------------
    async def read_secret(self, namespace: str, name: str) -> Obj | None:
        return await self._get_or_none(self._core.read_namespaced_secret, name, namespace)

    async def ensure_secret(self, namespace: str, body: Obj) -> Obj:
        """Create the Secret unless one with that name exists; return what is stored."""
        return await self._create_or_existing(
            self._core.create_namespaced_secret,
            self._core.read_namespaced_secret,
            namespace,
            body,
        )

    # Pods --------------------------------------------------------------------
    async def list_pods(self, namespace: str, selector: str) -> list[Obj]:
        data = await self._call(self._core.list_namespaced_pod, namespace, label_selector=selector)
        items: list[Obj] = data.get("items", [])
        return items

    async def list_all_pods(self) -> list[Obj]:
        """Every Pod of the cluster that has not finished (HostPort placement)."""
        data = await self._call(
            self._core.list_pod_for_all_namespaces,
            field_selector="status.phase!=Succeeded,status.phase!=Failed",
        )
        items: list[Obj] = data.get("items", [])
        return items

    async def list_nodes(self) -> list[Obj]:
        """Every Node of the cluster (HostPort placement reads addresses and taints)."""
        data = await self._call(self._core.list_node)
        items: list[Obj] = data.get("items", [])
        return items

    async def ensure_pod(self, namespace: str, body: Obj) -> Obj:
        """Create the Pod unless one with that (deterministic) name exists."""
        return await self._create_or_existing(
            self._core.create_namespaced_pod,
            self._core.read_namespaced_pod,
            namespace,
            body,
        )

    async def label_pod(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        """Merge ``labels`` into the Pod's labels."""
        await self._call(
            self._core.patch_namespaced_pod, name, namespace, {"metadata": {"labels": labels}}
        )

    async def delete_pod(self, namespace: str, name: str) -> None:
        try:
            await self._call(self._core.delete_namespaced_pod, name, namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise

    # Services ------------------------------------------------------------------
    async def read_service(self, namespace: str, name: str) -> Obj | None:
        return await self._get_or_none(self._core.read_namespaced_service, name, namespace)

    async def ensure_service(self, namespace: str, body: Obj) -> Obj:
        """Create the Service unless one with that name exists; return what is stored."""
        return await self._create_or_existing(
            self._core.create_namespaced_service,
            self._core.read_namespaced_service,
            namespace,
            body,
        )

    # PodDisruptionBudgets ------------------------------------------------------
    async def apply_pdb(self, namespace: str, body: Obj) -> bool:
        """Create the budget, or patch its ``spec.minAvailable`` when it differs;
        False when it was already as wanted (nothing written)."""
        name = body["metadata"]["name"]
        current = await self._get_or_none(
            self._policy.read_namespaced_pod_disruption_budget, name, namespace
        )
        if current is None:
            await self._create_or_existing(
                self._policy.create_namespaced_pod_disruption_budget,
                self._policy.read_namespaced_pod_disruption_budget,
                namespace,
                body,
            )
            return True
        wanted = body["spec"]["minAvailable"]
        if (current.get("spec") or {}).get("minAvailable") == wanted:
            return False
        await self._call(
            self._policy.patch_namespaced_pod_disruption_budget,
            name,
            namespace,
            {"spec": {"minAvailable": wanted}},
        )
        return True

    # Custom resources ----------------------------------------------------------
    async def read_custom(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Obj | None:
        return await self._get_or_none(
            self._custom.get_namespaced_custom_object, group, version, namespace, plural, name
        )

    async def list_custom(self, group: str, version: str, namespace: str, plural: str) -> list[Obj]:
        data = await self._call(
            self._custom.list_namespaced_custom_object, group, version, namespace, plural
        )
        items: list[Obj] = data.get("items", [])
        return items

    # Leases (leader election) -------------------------------------------------
    async def read_lease(self, namespace: str, name: str) -> Obj | None:
        return await self._get_or_none(self._coord.read_namespaced_lease, name, namespace)

    async def create_lease(self, namespace: str, body: Obj) -> Obj | None:
        """Create a Lease; None when another replica created it first."""
        try:
            return await self._call(self._coord.create_namespaced_lease, namespace, body)
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                return None
            raise

    async def replace_lease(self, namespace: str, body: Obj) -> Obj | None:
        """Replace a Lease at its resourceVersion; None when someone else wrote it first."""
        try:
            return await self._call(
                self._coord.replace_namespaced_lease, body["metadata"]["name"], namespace, body
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                return None
            raise


__all__ = [
    "KUBE_ERRORS",
    "Kube",
    "Obj",
    "api_client",
    "configuration",
    "connection_info",
    "kopf_session",
    "watch_streams",
]
