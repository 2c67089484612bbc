"""Kubernetes Events about Pods (what `kubectl describe pod` lists).

Posting is fire-and-forget: an Event that cannot be written is logged and
dropped, never a reason to hold up a Pod.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sipfleet.devcluster.kubelet.api import TRANSIENT_ERRORS, Api
from sipfleet.devcluster.kubelet.node import now_micro, now_rfc3339

log = logging.getLogger(__name__)

# reason, message, type ("Normal" or "Warning")
EventSink = Callable[[str, str, str], None]


def event_body(
    pod: dict[str, Any], node: str, reason: str, message: str, kind: str
) -> dict[str, Any]:
    meta = pod["metadata"]
    now = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": now_micro(),
        "action": reason,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, api: Api, node: str) -> None:
        self.api = api
        self.node = node
        self._pending: set[asyncio.Task[None]] = set()

    def for_pod(self, pod: Callable[[], dict[str, Any]]) -> EventSink:
        """A sink that reports about the Pod `pod()` returns at the time of the event."""

        def emit(reason: str, message: str, kind: str = "Normal") -> None:
            self.emit(pod(), reason, message, kind)

        return emit

    def emit(self, pod: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        body = event_body(pod, self.node, reason, message, kind)
        task = asyncio.create_task(self._post(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, body: dict[str, Any]) -> None:
        path = f"/api/v1/namespaces/{body['metadata']['namespace']}/events"
        try:
            await self.api.post(path, body)
        except TRANSIENT_ERRORS as err:
            log.info("event %s not recorded: %s", body["reason"], err)
