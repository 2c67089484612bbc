"""Apply a planner ``Decision`` through the Kubernetes API and the servers' admin API.

Every step is idempotent, so applying the same Decision twice (or after a
restart) changes nothing the second time:
- node Pods get deterministic names ``<fleet>-node-<n>`` (lowest free n in the
  fleet, under a per-fleet lock) and "already exists" is success;
- ``POST /v1/shards`` creates a URI only if missing;
- routes carry a generation that only grows and an equal one is a no-op;
- the planner already subtracts running transfers (read back from the
  servers), so a restarted operator does not start a transfer twice;
- draining is a Pod label plus ``POST /v1/drain``, both repeatable;
- only Pods the planner found drained and empty are deleted.

A failing step does not stop the others; it is reported in the ``Outcome``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sipfleet.node.admin_client import AdminClient, AdminError
from sipfleet.node.admin_types import Access, RouteEntry, ShardState, TransferRequest
from sipfleet.node.auth.policy import AccessPolicy
from sipfleet.node.presentation import SenderDisplay
from sipfleet.operator import exposure, rollout
from sipfleet.operator import pods as podlib
from sipfleet.operator.kube import KUBE_ERRORS, Obj
from sipfleet.operator.models import SipFleetSpec
from sipfleet.operator.observe import Observed
from sipfleet.operator.planner import Decision, Route
from sipfleet.operator.routing import FleetRoutes, next_generation
from sipfleet.operator.runtime import Runtime

log = logging.getLogger(__name__)
EventType = Literal["Normal", "Warning"]
_FAILURES: tuple[type[Exception], ...] = (AdminError, *KUBE_ERRORS)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the SipConference."""

    type: EventType
    reason: str
    message: str


@dataclass
class Outcome:
    """What applying a Decision did: Events to post, steps that failed."""

    events: list[Event] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def did(self, reason: str, message: str) -> None:
        self.events.append(Event("Normal", reason, message))

    def failed(self, reason: str, message: str) -> None:
        self.events.append(Event("Warning", reason, message))
        self.failures.append(message)


def free_indices(used: Iterable[int], count: int) -> list[int]:
    """The ``count`` lowest node indices (from 1) not in ``used``."""
    taken, out, n = set(used), list[int](), 1
    while len(out) < count:
        if n not in taken:
            out.append(n)
        n += 1
    return out


def route_entries(routes: Iterable[Route], exclude: Iterable[str] = ()) -> list[RouteEntry]:
    """The planner's routes as routing-table entries, minus servers about to go."""
    gone = set(exclude)
    return [RouteEntry(r.server, r.uri, r.state, r.free) for r in routes if r.server not in gone]


@dataclass
class Executor:
    """Applies one conference's Decision; one instance per control-loop pass."""

    rt: Runtime
    namespace: str
    fleet_body: Mapping[str, Any]
    fleet_spec: SipFleetSpec
    conference: str
    token: str
    observed: Observed
    access: Access | None = None
    """The conference's access policy (SipConference.spec.access) for its new shards."""
    sender_display: SenderDisplay | None = None
    """How its members see who wrote a group message (SipConference.spec.senderDisplay;
    None: each server's default), for its new shards."""
    outcome: Outcome = field(default_factory=Outcome)
    created_on: set[str] = field(default_factory=set, init=False)
    """Servers this pass created a shard on: their route table is pushed whatever
    they reported (a restarted one may not have answered the observation)."""

    @property
    def fleet(self) -> str:
        return str(self.fleet_body["metadata"]["name"])

    @property
    def fleet_routes(self) -> FleetRoutes:
        return self.rt.fleet_routes((self.namespace, self.fleet))

    def _client(self, server: str) -> AdminClient:
        return self.rt.admin(self.observed.urls[server], self.token)

    async def apply(self, decision: Decision) -> Outcome:
        entries = route_entries(decision.routes, [a.server for a in decision.delete])
        for placement in decision.create_shards:
            created = await self._ensure_shard(
                placement.server, placement.group, placement.capacity
            )
            # Route a new shard in the pass that created it: leaving it to the
            # next observation cost a whole interval of scale-out reaction time
            # (bench/operator_reaction.py).
            if created:
                self.created_on.add(created.server)
            if created and created.server == podlib.main_pod_name(self.fleet):
                entries = self._with_main(decision, created, entries)
            elif created and all(e.server != created.server for e in entries):
                entries.append(created)
        await self.push_routes(decision.group, entries)
        await self._sync_shard_settings(decision.group)
        for action in decision.roll:  # graceful: the node moves its members, then exits
            await self._delete(action.server, action.reason, event="RollingUpdate")
        if decision.roll_main:  # the same graceful exit; the fleet timer recreates it
            await self._delete(
                decision.roll_main.server, decision.roll_main.reason, event="RollingUpdate"
            )
        for action in decision.drain:
            await self._drain(action.server, action.reason)
        if decision.transfers:
            await self._transfers(decision)
        for action in decision.delete:
            if not await self._still_busy(action.server):
                await self._delete(action.server, action.reason)
        if decision.create_nodes:
            await self._create_nodes(decision.create_nodes, decision.create_reason)
        return self.outcome

    def _with_main(
        self, decision: Decision, main: RouteEntry, entries: list[RouteEntry]
    ) -> list[RouteEntry]:
        """The table headed by a main server whose shard this pass (re)created: a
        main server back from a crash gets its routes in this same pass, not one
        interval later, during which it took messages for no one. The planner
        routes nothing while the main server has no shard, so the other servers'
        entries come from the group's last table (those still observed and not
        being deleted), fresh ones from the next pass."""
        gone = {a.server for a in decision.delete}
        rest = entries or [
            e
            for e in self.fleet_routes.groups.get(decision.group, ())
            if e.server in self.observed.urls and e.server not in gone
        ]
        return [main, *(e for e in rest if e.server != main.server)]

    async def _ensure_shard(self, server: str, group: str, capacity: int) -> RouteEntry | None:
        """Create the group's shard on ``server``; its routing entry, or None on failure."""
        if server not in self.observed.urls:
            return None
        try:
            shard = await self._client(server).ensure_shard(
                group, capacity, self.access, self.sender_display
            )
        except _FAILURES as exc:
            self.outcome.failed("ShardFailed", f"create {group} on {server}: {exc}")
            return None
        self.outcome.did("ShardCreated", f"{group} on {server} at {shard.uri}")
        free = max(0, shard.capacity - shard.members)
        return RouteEntry(server, shard.uri, "active", free)

    async def _sync_shard_settings(self, group: str) -> None:
        """Re-send the conference's per-group settings to every server whose shard of
        `group` reports others: its access policy (SipConference.spec.access,
        docs/security.md) and its sender display (spec.senderDisplay,
        docs/media-and-messages.md), so a changed SipConference reaches running
        servers (new shards get them when created; ensure_shard is idempotent and keeps
        the capacity). A setting the shard does not report (a server that predates
        it) or the conference leaves unset is not sent: the shard keeps what it has."""
        wanted_access = (
            None if self.access is None else AccessPolicy.from_json(self.access.to_json())
        )
        for server, state in sorted(self.observed.states.items()):
            for shard in state.shards:
                if shard.group != group:
                    continue
                access = self._changed_access(shard, wanted_access)
                display = self.sender_display
                if display is None or shard.sender_display in (None, display):
                    display = None
                if access is None and display is None:
                    continue
                try:
                    await self._client(server).ensure_shard(
                        group, shard.capacity, access, sender_display=display
                    )
                except _FAILURES as exc:
                    self.outcome.failed("ShardFailed", f"settings of {group} on {server}: {exc}")
                    continue
                if access is not None:
                    self.outcome.did(
                        "AccessUpdated", f"{group} on {server}: policy {access.policy}"
                    )
                if display is not None:
                    self.outcome.did(
                        "SenderDisplay", f"{group} on {server} shows senders as {display}"
                    )

    def _changed_access(self, shard: ShardState, wanted: AccessPolicy | None) -> Access | None:
        """The conference's access to send to `shard`, None when it has it already,
        does not report one, or the conference sets none."""
        if wanted is None or shard.access is None:
            return None
        if AccessPolicy.from_json(shard.access.to_json()) == wanted:
            return None
        return self.access

    async def push_routes(self, group: str, entries: list[RouteEntry]) -> None:
        """Record the group's entries and push changed tables to the servers we observed.

        Nothing is pushed unless the main server heads the list: a table
        without its root would cut the distribution tree, so a pass that
        could not reach the main server keeps the previous tables.
        """
        main = podlib.main_pod_name(self.fleet)
        if not entries or entries[0].server != main:
            return
        self.fleet_routes.set_group(group, entries)
        async with self.rt.route_lock((self.namespace, self.fleet)):
            await self._seed_from_servers()
            await self._push()

    async def withdraw(self, group: str) -> None:
        """Undo the group: drop its routes, delete its shards (BYE), delete its nodes.

        Failures land in ``outcome``; the caller retries until there are none.
        """
        async with self.rt.route_lock((self.namespace, self.fleet)):
            await self._seed_from_servers()
            self.fleet_routes.drop_group(group)
            await self._push()
        for server, state in sorted(self.observed.states.items()):
            if any(s.group == group for s in state.shards):
                try:
                    await self._client(server).delete_shard(group)
                except _FAILURES as exc:
                    self.outcome.failed("ReleaseFailed", f"delete {group} on {server}: {exc}")
                    continue
                self.outcome.did("ShardDeleted", f"{group} removed from {server}")
        for pod in self.observed.node_pods:
            name = pod["metadata"]["name"]
            await self._delete(name, f"delete {name}: {group} released")

    def _reported(self) -> dict[str, int]:
        """Servers we observed -> their routes generation (0 for one we created a
        shard on in this pass: it needs its table)."""
        reported = {n: state.routes_generation for n, state in self.observed.states.items()}
        return reported | dict.fromkeys(self.created_on, 0)

    async def _push(self) -> None:
        """Push every changed table with one new generation (under the fleet's route lock).

        Passes of one fleet queue on that lock while a push is in flight; the
        next one pushes every group set meanwhile, the rest find nothing stale.
        """
        routes = self.fleet_routes
        reported = self._reported()
        version = routes.version
        stale = routes.stale_servers(reported, self.observed.taken)
        if not stale:
            return
        generation = next_generation(time.time(), reported.values(), routes.generation)
        routes.generation = generation
        for server, table in sorted(stale.items()):
            try:
                await self._client(server).put_routes(generation, table)
            except _FAILURES as exc:
                self.outcome.failed("RoutesFailed", f"push routes to {server}: {exc}")
                continue
            routes.mark_pushed(server, generation, table, version=version, at=time.monotonic())
        log.debug("routes generation %d pushed to %s", generation, ", ".join(sorted(stale)))

    async def _seed_from_servers(self) -> None:
        """After a restart, learn other conferences' groups from the servers' own tables.

        Otherwise the first push to the main server would drop every group
        whose SipConference has not yet had a pass in this process.
        """
        routes = self.fleet_routes
        for server in sorted(self.observed.states):
            if server in routes.pushed or server in routes.seeded:
                continue
            try:
                table = await self._client(server).routes()
            except _FAILURES:
                continue
            for group, entries in table.groups.items():
                routes.seed(group, entries)
            routes.seeded.add(server)

    async def _drain(self, server: str, reason: str) -> None:
        try:
            await self.rt.kube.label_pod(self.namespace, server, {podlib.LABEL_DRAINING: "true"})
            if server in self.observed.states:
                await self._client(server).drain()
        except _FAILURES as exc:
            self.outcome.failed("DrainFailed", f"{reason}: {exc}")
            return
        self.outcome.did("ScaleIn", reason)

    async def _transfers(self, decision: Decision) -> None:
        started: list[str] = []
        for t in decision.transfers:
            if t.source not in self.observed.urls:
                continue
            try:
                request = TransferRequest(
                    decision.group, t.target_uri, t.method, t.rate, count=t.count
                )
                answer = await self._client(t.source).start_transfer(request)
            except _FAILURES as exc:
                self.outcome.failed("TransferFailed", f"{t.reason}: {exc}")
                continue
            started.append(f"{t.reason} (id {answer.id}, {t.rate:g}/s)")
        if started:
            self.outcome.did("Transfer", "; ".join(started))

    async def _still_busy(self, server: str) -> bool:
        """Ask a node about to be deleted once more: members or a running transfer?

        The plan may rest on a fleet snapshot up to two TTLs old; deleting is
        the one step that cannot be undone, so it gets a fresh look. An
        unreachable node counts as not busy (it cannot serve anyone).
        """
        if server not in self.observed.urls:
            return False
        client = self._client(server)
        try:
            state, transfers = await client.state(), await client.transfers()
        except _FAILURES:
            return False
        busy = any(s.members > 0 for s in state.shards) or any(
            t.state == "running" for t in transfers
        )
        if busy:
            log.info("not deleting %s yet: it still has members or a running transfer", server)
        return busy

    async def _delete(self, server: str, reason: str, *, event: str = "NodeDeleted") -> None:
        try:
            await self.rt.kube.delete_pod(self.namespace, server)
        except _FAILURES as exc:
            self.outcome.failed("DeleteFailed", f"{reason}: {exc}")
            return
        self.outcome.did(event, reason)

    async def _create_nodes(self, count: int, reason: str) -> None:
        spec = podlib.server_pod_spec(self.fleet, self.fleet_spec, "node", self.conference)
        template = rollout.node_template_hash(self.fleet_body, self.fleet_spec)
        async with self.rt.pod_lock((self.namespace, self.fleet)):
            fleet_pods = await self.rt.kube.list_pods(
                self.namespace, podlib.fleet_selector(self.fleet, "node")
            )
            used = [
                i for p in fleet_pods if (i := podlib.node_index(p["metadata"]["name"])) is not None
            ]
            names: list[str] = []
            for index in free_indices(used, count):
                name = podlib.node_pod_name(self.fleet, index)
                body = podlib.server_pod(self.fleet_body, name, "node", spec, index)
                body["metadata"]["annotations"] = {rollout.TEMPLATE_HASH: template}
                try:
                    exposed = await exposure.prepare_pod(
                        self.rt.kube, self.fleet_body, body, self.fleet_spec
                    )
                    if exposed is None:
                        self.outcome.did("AddressPending", f"{name} waits for its Service")
                        continue
                    await self._create(exposed)
                except exposure.NoHostSlot as exc:
                    self.outcome.failed(exc.reason, f"create {name}: {exc}")
                    break
                except _FAILURES as exc:
                    self.outcome.failed("ScaleOutFailed", f"create {name}: {exc}")
                    continue
                names.append(name)
        if names:
            self.outcome.did("ScaleOut", f"{reason}: created {', '.join(names)}")

    async def _create(self, body: Obj) -> None:
        stored = await self.rt.kube.ensure_pod(self.namespace, body)
        owner = (stored["metadata"].get("labels") or {}).get(podlib.LABEL_CONFERENCE)
        if owner != self.conference:
            raise OSError(f"Pod {body['metadata']['name']} already exists for {owner!r}")
