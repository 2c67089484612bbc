"""Watching the fleet: server Pods, each server's own count (GET /v1/state), the
conference status and the operator's Events, polled once per tick."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import kubernetes
from sipfleet.demo import manifests
from sipfleet.demo.timeline import Mark, Timeline
from sipfleet.node.admin_client import AdminClient, AdminError
from sipfleet.node.admin_types import NodeState
from sipfleet.operator.kube import Kube, Obj, api_client
from sipfleet.operator.pods import secret_token

ADMIN_PORT = 8080
EVENT_REASONS = frozenset(
    {"ScaleOut", "ScaleIn", "NodeDeleted", "Transfer", "ScaleOutFailed", "DrainFailed",
     "TransferFailed", "DeleteFailed", "ReconcileFailed", "ShardFailed", "RoutesFailed"}
)  # fmt: skip


@dataclass(frozen=True)
class ServerView:
    name: str
    role: str
    state: str
    members: int | None
    """Members of the group on this server; None while it hosts no shard or is silent."""


@dataclass(frozen=True)
class Snapshot:
    t: float
    servers: tuple[ServerView, ...]
    phase: str
    conference_members: int
    decision: str
    events: tuple[Mark, ...]

    def hosting(self) -> dict[str, int]:
        """Members per server, for the servers that host the group."""
        return {s.name: s.members for s in self.servers if s.members is not None}


def pod_state(pod: Obj, draining: bool) -> str:
    """A one-word state for the view: Terminating, Draining, Ready, Starting or Pending."""
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    if meta.get("deletionTimestamp"):
        return "Terminating"
    if draining:
        return "Draining"
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Ready") == "True":
        return "Ready"
    return "Starting" if status.get("podIP") else "Pending"


def shard_members(state: NodeState, group: str) -> int | None:
    """Members of the group's shard on that server (None: no shard of it there)."""
    return next((s.members for s in state.shards if s.group == group), None)


def decision_text(status: dict[str, Any]) -> str:
    last = status.get("lastDecision") or {}
    return f"{last.get('kind', '')}: {last.get('reason', '')}" if last else ""


class Observer:
    """Polls the cluster and the servers; records every tick into ``timeline``."""

    def __init__(self, kubeconfig: str, timeline: Timeline) -> None:
        client = api_client(kubeconfig)
        self._kube = Kube(client)
        self._core = kubernetes.client.CoreV1Api(client)
        self.timeline = timeline
        self._token: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._seen_events: set[tuple[str, int]] = set()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def token(self) -> str | None:
        if self._token is None:
            secret = await self._kube.read_secret(manifests.NAMESPACE, manifests.TOKEN_SECRET)
            if secret is not None:
                self._token = secret_token(secret)
        return self._token

    async def main_ip(self) -> str | None:
        """The main server's Pod IP once it is Ready."""
        for pod in await self._pods():
            if pod["metadata"]["labels"].get("sipfleet.io/role") == "main" and (
                pod_state(pod, False) == "Ready"
            ):
                ip: str | None = pod["status"].get("podIP")
                return ip
        return None

    async def conference(self) -> dict[str, Any]:
        body = await self._kube.read_custom(
            "sipfleet.io", "v1alpha1", manifests.NAMESPACE, "sipconferences", manifests.CONFERENCE
        )
        status: dict[str, Any] = (body or {}).get("status") or {}
        return status

    async def _pods(self) -> list[Obj]:
        return await self._kube.list_pods(
            manifests.NAMESPACE, f"sipfleet.io/fleet={manifests.FLEET}"
        )

    async def _server_state(self, ip: str | None) -> NodeState | None:
        token = await self.token()
        if ip is None or token is None:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5))
        client = AdminClient(f"http://{ip}:{ADMIN_PORT}", token, session=self._session)
        try:
            return await client.state()
        except AdminError:
            return None

    async def _server(self, pod: Obj) -> ServerView:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        state = await self._server_state(pod.get("status", {}).get("podIP"))
        members = shard_members(state, manifests.GROUP) if state else None
        draining = bool(state and state.draining) or "sipfleet.io/draining" in labels
        return ServerView(
            meta["name"], labels.get("sipfleet.io/role", "?"), pod_state(pod, draining), members
        )

    async def _new_events(self, t: float) -> list[Mark]:
        resp: Any = await asyncio.to_thread(
            self._core.list_namespaced_event, manifests.NAMESPACE, _preload_content=False
        )
        items = json.loads(resp.data).get("items", [])
        items.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        marks = []
        for event in items:
            key = (event["metadata"]["uid"], int(event.get("count") or 1))
            if event.get("reason") not in EVENT_REASONS or key in self._seen_events:
                continue
            self._seen_events.add(key)
            marks.append(Mark(t, event["reason"], event.get("message", "")))
        return marks

    async def poll(self, t: float) -> Snapshot:
        pods = sorted(await self._pods(), key=_server_order)
        servers = await asyncio.gather(*(self._server(p) for p in pods))
        status = await self.conference()
        marks = await self._new_events(t)
        snap = Snapshot(
            t,
            tuple(servers),
            str(status.get("phase") or "-"),
            int(status.get("members") or 0),
            decision_text(status),
            tuple(marks),
        )
        self.timeline.record(t, snap.hosting())
        for mark in marks:
            self.timeline.mark(mark.t, mark.kind, mark.message)
        return snap


def _server_order(pod: Obj) -> tuple[int, int, str]:
    """Main first, then nodes by index."""
    labels = pod["metadata"].get("labels") or {}
    index = labels.get("sipfleet.io/index", "")
    return (
        0 if labels.get("sipfleet.io/role") == "main" else 1,
        int(index) if index.isdigit() else 0,
        pod["metadata"]["name"],
    )
