"""Where the operator reads a group's load from: Prometheus or the nodes' /metrics.

Both sources answer the same question -- how many members of one group does
each server hold right now -- and say which servers they could not answer
for. A server without a fresh sample is reported in ``missing``; a source
that failed as a whole sets ``error``. The planner must treat both as "do not
scale in" (see DESIGN.md: stale or missing metrics never cause a scale-down).

Prometheus contract: every scraped node target carries a ``pod`` label with
the pod name (a static or file_sd config sets it per target; with
kubernetes_sd relabel ``__meta_kubernetes_pod_name`` to ``pod``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

MEMBERS_METRIC = "sipfleet_node_members"
UNMOVED_METRIC = "sipfleet_node_unmoved_members"
"""Counter: members a stopping server could not move before it exits."""


class LoadSourceError(Exception):
    """The response of a load source cannot be understood."""


@dataclass(frozen=True)
class LoadReading:
    """Members of one group per server name, as read from one source."""

    source: str
    members: Mapping[str, int] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()
    error: str | None = None

    @property
    def complete(self) -> bool:
        """True when every expected server answered and the source worked."""
        return self.error is None and not self.missing

    @property
    def total(self) -> int:
        return sum(self.members.values())


class LoadSource(Protocol):
    """Reads a group's members per server; ``servers`` maps name -> admin base URL."""

    name: str

    async def read(self, group: str, servers: Mapping[str, str]) -> LoadReading: ...


def _promql_string(value: str) -> str:
    """Quote ``value`` as a PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def members_query(group: str, freshness_seconds: float, template: str | None = None) -> str:
    """PromQL: members of ``group`` per pod.

    The default counts only samples newer than ``freshness_seconds``
    (``last_over_time`` over that range), so a target that stopped being
    scraped drops out then instead of after Prometheus' 5-minute lookback.
    A ``template`` (the fleet's spec.metrics.queries.members) replaces the
    selector; ``$group`` in it becomes the quoted group URI's value.
    """
    if template:
        expr = template.replace("$group", _promql_string(group)[1:-1])
        return f"sum by (pod) ({expr})"
    window = max(1, math.ceil(freshness_seconds))
    return (
        f"sum by (pod) (last_over_time({MEMBERS_METRIC}{{group={_promql_string(group)}}}"
        f"[{window}s]))"
    )


def parse_prometheus_vector(payload: Any) -> dict[str, int]:
    """Parse an /api/v1/query answer of ``sum by (pod) (...)`` into pod -> members."""
    if not isinstance(payload, dict):
        raise LoadSourceError(f"Prometheus answer is not a JSON object: {payload!r:.200}")
    if payload.get("status") != "success":
        raise LoadSourceError(
            f"Prometheus query failed: {payload.get('errorType')}: {payload.get('error')}"
        )
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise LoadSourceError(f"Prometheus answer is not an instant vector: {data!r:.200}")
    members: dict[str, int] = {}
    for item in data.get("result", []):
        try:
            pod = item["metric"]["pod"]
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LoadSourceError(
                f"Prometheus sample lacks a 'pod' label or a numeric value: {item!r:.200}"
            ) from exc
        if not math.isfinite(value) or value < 0:
            raise LoadSourceError(f"Prometheus sample for pod {pod} is not a count: {value}")
        members[pod] = round(value)
    return members


def parse_node_members(text: str, metric: str = MEMBERS_METRIC) -> dict[str, int]:
    """group -> value of ``metric`` (a gauge, or a counter's total) in one node's
    Prometheus text exposition; members by default."""
    out: dict[str, int] = {}
    names = (metric, metric + "_total")
    try:
        for family in text_string_to_metric_families(text):
            if family.name != metric:
                continue
            for sample in family.samples:
                if sample.name in names and "group" in sample.labels:
                    out[sample.labels["group"]] = round(sample.value)
    except ValueError as exc:
        raise LoadSourceError(f"unparseable /metrics text: {exc}") from exc
    return out


def parse_node_metrics(text: str, group: str) -> int | None:
    """Members of ``group`` in one node's Prometheus text exposition; None if absent."""
    return parse_node_members(text).get(group)


def _reading(source: str, found: Mapping[str, int], expected: Iterable[str]) -> LoadReading:
    expected_set = frozenset(expected)
    return LoadReading(
        source=source,
        members={name: n for name, n in found.items() if name in expected_set},
        missing=frozenset(expected_set - found.keys()),
    )


class PrometheusLoadSource:
    """Asks a Prometheus server's HTTP API with PromQL."""

    name = "prometheus"

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        freshness_seconds: float = 15.0,
        members_query: str | None = None,
        timeout: float = 3.0,
    ) -> None:
        self._url = url.rstrip("/") + "/api/v1/query"
        self._session = session
        self._freshness = freshness_seconds
        self._template = members_query
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def read(self, group: str, servers: Mapping[str, str]) -> LoadReading:
        query = members_query(group, self._freshness, self._template)
        try:
            async with self._session.get(
                self._url, params={"query": query}, timeout=self._timeout
            ) as resp:
                payload = await resp.json(content_type=None)
            found = parse_prometheus_vector(payload)
        except (aiohttp.ClientError, TimeoutError, ValueError, LoadSourceError) as exc:
            return LoadReading(
                source=self.name,
                missing=frozenset(servers),
                error=f"Prometheus at {self._url} unusable: {exc or type(exc).__name__}",
            )
        return _reading(self.name, found, servers)


class ScrapeLoadSource:
    """Scrapes every server's ``/metrics`` directly (no Prometheus needed)."""

    name = "scrape"

    def __init__(self, session: aiohttp.ClientSession, *, timeout: float = 2.0) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _scrape(self, base_url: str, metric: str) -> dict[str, int] | None:
        try:
            async with self._session.get(
                base_url.rstrip("/") + "/metrics", timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    return None
                text = await resp.text()
            return parse_node_members(text, metric)
        except (aiohttp.ClientError, TimeoutError, LoadSourceError):
            return None

    async def read_all(
        self, servers: Mapping[str, str], metric: str = MEMBERS_METRIC
    ) -> dict[str, dict[str, int]]:
        """server -> group -> members (or ``metric``), for every server that could be scraped.

        One scrape per server serves every group it hosts (see FleetView).
        """
        names = list(servers)
        found = await asyncio.gather(*(self._scrape(servers[n], metric) for n in names))
        return {n: by for n, by in zip(names, found, strict=True) if by is not None}

    async def read(self, group: str, servers: Mapping[str, str]) -> LoadReading:
        return scraped_reading(await self.read_all(servers), group, servers)


def scraped_reading(
    scraped: Mapping[str, Mapping[str, int]], group: str, servers: Iterable[str]
) -> LoadReading:
    """A group's reading from ``read_all``'s answer; a scraped server without the group's
    sample is missing, as is one that could not be scraped."""
    found = {n: by[group] for n, by in scraped.items() if group in by}
    return _reading(ScrapeLoadSource.name, found, servers)
