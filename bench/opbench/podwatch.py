"""Wall-clock times at which Pods of one namespace appear and turn Ready, from a watch.

Kubernetes timestamps have one-second resolution; a watch stream seen from the
benchmark gives ~10 ms resolution (plus the API server's notification delay).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch


@dataclass
class PodTimes:
    name: str
    role: str
    ip: str | None = None
    created: float | None = None  # first seen (ADDED)
    running: float | None = None  # first seen with its container running
    ready: float | None = None  # first seen with condition Ready=True


@dataclass
class PodWatch:
    api: client.CoreV1Api
    namespace: str
    pods: dict[str, PodTimes] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> PodWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3.0)

    def snapshot(self) -> dict[str, PodTimes]:
        with self._lock:
            return {k: PodTimes(**vars(v)) for k, v in self.pods.items()}

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.api.list_namespaced_pod, self.namespace, timeout_seconds=2
                ):
                    self._seen(event["object"], time.time())
                    if self._stop.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
                        break
            except Exception:  # a broken or timed-out stream is simply reopened
                time.sleep(0.1)

    def _seen(self, pod: Any, now: float) -> None:
        labels = pod.metadata.labels or {}
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        running = any(c.state and c.state.running for c in (pod.status.container_statuses or []))
        with self._lock:
            times = self.pods.setdefault(
                pod.metadata.name,
                PodTimes(pod.metadata.name, labels.get("sipfleet.io/role", "?")),
            )
            if times.created is None:
                times.created = now
            times.ip = pod.status.pod_ip or times.ip
            if running and times.running is None:
                times.running = now
            if ready and times.ready is None:
                times.ready = now
