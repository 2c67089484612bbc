"""Disruption scenarios on a running fleet, shared by the e2e tests
(tests/e2e/test_operator_disruption.py) and the benchmark (bench/disruption.py).

The fleet: a main server and three nodes (minNodes 3, 40 members per server at
target load 0.4 and high watermark 0.75), 60 resident sipp members
(scenarios/resident.xml) plus one more, ``talker1``, from whose AOR a sipp
ticker sends a group MESSAGE every second (scenarios/ticker.xml). Nodes leave
gracefully at ``DRAIN_RATE`` members/s, so their grace period is
ceil(40 / 4) + 15 = 25 s.

A scenario disrupts the fleet, waits until it has settled (every member on a
live server, main + 3 Ready servers) and returns a `Result`: members lost,
seconds until every member was back on a live server, group messages lost or
missed by someone and deliveries duplicated, over the ticks sent from the
disruption until it settled. ``SCENARIOS`` maps each name to its function; a
module may add its own (the crash scenarios do) with `scenario`.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kube_support import find_json, wait_for
from operator_harness import (
    Members,
    Operator,
    Ticker,
    apply,
    conference,
    events,
    evict,
    fleet,
    main_ip,
    operator_namespace,
    pods,
    save_events,
    send_group_message,
)
from sipfleet.devcluster.cluster import Cluster
from sipfleet.devcluster.controlplane import ControlPlane

NS = "op-disrupt"
FLEET = "dis"
MEMBERS = 60
SERVERS = 4  # main + minNodes 3: 16 members each at target load (60 + talker1 -> 4)
DRAIN_RATE = 4  # members/s of a stopping server
GRACE = 25  # ceil(40 / DRAIN_RATE) + 15
SETTLE_SECONDS = 120.0
DELIVERY_SECONDS = 15.0  # how long a tick may take to reach everyone
API_DOWN_SECONDS = 30.0
OPERATOR_KILL_AFTER = 1.0
OPERATOR_DOWN_SECONDS = 8.0


@dataclass
class Fleet:
    """A running fleet with its members, ticker and operator."""

    kube: Cluster
    workdir: Path
    main_ip: str
    members: Members
    talker: Members
    ticker: Ticker
    operator: Operator
    template_changes: int = 0
    outages: int = 0

    def ips(self) -> dict[str, str]:
        """Pod name -> Pod IP of every server Pod that has one."""
        return {
            p["metadata"]["name"]: ip
            for p in pods(self.kube, NS)
            if (ip := (p.get("status") or {}).get("podIP"))
        }

    def uid(self, name: str) -> str | None:
        """The UID of the Pod named ``name`` now (None: no such Pod; names are reused)."""
        pod = find_json(self.kube, "pod", name, "-n", NS)
        return str(pod["metadata"]["uid"]) if pod else None

    def running(self, name: str) -> bool:
        pod = find_json(self.kube, "pod", name, "-n", NS)
        return bool(pod) and not pod["metadata"].get("deletionTimestamp")

    def busiest_node(self) -> tuple[str, str, set[str]]:
        """(Pod, IP, its members) of the running node Pod holding the most members."""
        where = self.members.locations()
        nodes = {n: ip for n, ip in self.ips().items() if "-node-" in n and self.running(n)}
        counts = Counter(ip for ip in where.values() if ip in nodes.values())
        name, ip = max(nodes.items(), key=lambda n: counts[n[1]])
        return name, ip, {m for m, at in where.items() if at == ip}

    def describe(self) -> str:
        """Each server Pod: name, Ready, terminating, phase (for failure messages)."""
        return "; ".join(
            f"{p['metadata']['name']} ready={ready(p)} "
            f"terminating={bool(p['metadata'].get('deletionTimestamp'))} "
            f"phase={(p.get('status') or {}).get('phase')}"
            for p in pods(self.kube, NS)
        )

    def all_ready(self, servers: int = SERVERS) -> bool:
        """``servers`` server Pods, none terminating, every one Ready."""
        found = pods(self.kube, NS)
        return len(found) == servers and all(
            not p["metadata"].get("deletionTimestamp") and ready(p) for p in found
        )

    def on_live_servers(self) -> bool:
        """Every member's last JOINED/MOVED line names a server Pod that exists now."""
        where = self.members.locations()
        return len(where) == MEMBERS and set(where.values()) <= set(self.ips().values())

    def lost_events(self) -> list[str]:
        """The messages of the Events that count members lost (MembersNotMoved:
        a stopping server could not move them; MembersDropped: a server ended
        their sessions unasked)."""
        return [m for r, m in events(self.kube, NS) if r in ("MembersNotMoved", "MembersDropped")]


RETRY_AFTER = re.compile(r"SIP/2\.0 503 .*?Retry-After: *([0-9]+)", re.DOTALL)


def _retry_after(errors: Path) -> int | None:
    """The Retry-After seconds of a 503 sipp reported as unexpected in `errors` (its
    -error_file), None when the call failed otherwise."""
    try:
        found = RETRY_AFTER.search(errors.read_text(errors="replace"))
    except OSError:
        return None
    return None if found is None else int(found.group(1))


@dataclass
class SenderTicker:
    """A group message every second, each from a transient sipp member
    (``send_group_message``: joins, sends, leaves) named ``<prefix><n>x`` so each
    run's bodies are its own, sent to the main server at the address ``where()``
    gives at that second (None: none now, counted refused). A message refused with
    503 and Retry-After (a restarted server whose group is not back yet: sip-node
    restore.py) is tried again after that many seconds, as a user agent honouring
    Retry-After would (RFC 3261 21.5.4), up to ``retries`` times. At most 4 at once,
    each bounded to 30 s."""

    where: Callable[[], str | None]
    workdir: Path
    prefix: str
    sent: list[tuple[float, str]] = field(default_factory=list)
    """(time.monotonic() when sent, body) of each message the group accepted."""
    refused: list[float] = field(default_factory=list)
    """When each message the group did not take was sent."""
    retried: list[float] = field(default_factory=list)
    """When each message answered 503 + Retry-After (then tried again) was sent."""
    retries: int = 3
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SenderTicker:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            n = 0
            while not self._stop.wait(1.0):
                n += 1
                pool.submit(self._send, f"{self.prefix}{n}x")

    def _send(self, who: str) -> None:
        when = time.monotonic()
        for _ in range(1 + self.retries):
            ip = self.where()
            try:
                if ip is None:
                    raise OSError("no main server address")
                body = send_group_message(ip, self.workdir, who)
            except (AssertionError, OSError, subprocess.SubprocessError):
                wait = _retry_after(self.workdir / f"{who}.err")
                if wait is None:
                    break
                self.retried.append(when)
                time.sleep(wait)
                continue
            self.sent.append((when, body))
            return
        self.refused.append(when)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions", [])
    )


def start_fleet(kube: Cluster, workdir: Path, *, roll_main: bool = False) -> Fleet:
    """Namespace, operator, SipFleet + SipConference, 60 members and talker1 joined,
    the ticker running. Stop it with `stop_fleet`, also after a failure.

    ``roll_main``: a template change rolls the main server too (its new Pod has
    a new IP, which the ticker and `Fleet.main_ip` do not follow)."""
    operator_namespace(kube, NS)
    op = Operator(kube, NS, workdir / "operator.log").start()
    apply(
        kube,
        NS,
        fleet(
            FLEET,
            minNodes=3,
            maxNodes=5,
            membersPerNode=40,
            treeFanout=2,
            disruption={"membersPerSecond": DRAIN_RATE},
            rollout={"mainServer": roll_main},
        ),
        conference(
            "conf",
            FLEET,
            capacity={"membersPerServer": 40},
            scaling={
                "targetLoad": 0.4,
                "highWatermark": 0.75,
                "cooldownSeconds": 2,
                "intervalSeconds": 1,  # a pass each second reads a stopping node's count
                "scaleDownStabilizationSeconds": 600,  # no scale-in here
            },
            transfer={"mode": "refer", "membersPerSecond": 20},
        ),
    )
    ip = main_ip(kube, NS, FLEET)
    members = Members(ip, workdir, "res", MEMBERS, leaver=False, period_ms=200)
    talker = Members(ip, workdir, "talker", 1, leaver=False)
    f = Fleet(kube, workdir, ip, members, talker, Ticker(ip, workdir, "talker1"), op)
    wait_for("main + 3 Ready nodes", f.all_ready, timeout=90, step=1)
    talker.start()
    wait_for("talker1 to join", lambda: talker.joined() == {"talker1"}, timeout=30)
    members.start()
    wait_for(f"{MEMBERS} residents to join", f.on_live_servers, timeout=120, step=1)
    f.ticker.start()
    wait_for("the first tick", f.ticker.last, timeout=15)
    return f


def stop_fleet(kube: Cluster, f: Fleet | None, workdir: Path) -> None:
    """Stop members and ticker, keep the Events in workdir/events.txt, delete everything."""
    if f is not None:
        for proc in (f.ticker, f.members, f.talker):
            proc.stop()
    save_events(kube, NS, workdir / "events.txt")
    # The operator (still running) removes its finalizers as these go.
    kube.kubectl("delete", "sipconference", "conf", "-n", NS, "--timeout=60s", check=False)
    kube.kubectl("delete", "sipfleet", FLEET, "-n", NS, "--timeout=60s", check=False)
    if f is not None:
        f.operator.stop()
    # A conference whose release did not finish in time keeps the operator's finalizer,
    # and with it the namespace, for ever: the operator is gone, so drop it.
    unfinalize = '{"metadata":{"finalizers":null}}'
    kube.kubectl(
        "patch", "sipconference", "conf", "-n", NS, "--type=merge", "-p", unfinalize, check=False
    )
    # Bounded wait until the namespace is gone: the next module that starts a fleet
    # (test_operator_main_rollout after test_operator_disruption) creates it again.
    kube.kubectl("delete", "namespace", NS, "--timeout=180s", check=False)


def settle(f: Fleet) -> None:
    """Main + 3 Ready servers and every member on one of them (bounded)."""
    wait_for(f"main + 3 Ready servers ({f.describe()})", f.all_ready, SETTLE_SECONDS, step=1)
    wait_for("every member on a live server", f.on_live_servers, timeout=30)


@dataclass
class Deliveries:
    """What became of the group messages (ticks) ``first``..``last``."""

    first: int
    last: int
    unsent: list[int] = field(default_factory=list)
    """Ticks never answered 200 (refused or timed out): lost."""
    missed: dict[int, set[str]] = field(default_factory=dict)
    """Tick -> members it never reached."""
    duplicates: int = 0
    """(member, tick) deliveries beyond the first."""

    @property
    def sent(self) -> int:
        return self.last - self.first + 1

    @property
    def lost(self) -> int:
        """Ticks lost: unsent, or sent and missed by at least one member."""
        return len(self.unsent) + len(self.missed)


def deliveries(f: Fleet, first: int, last: int) -> Deliveries:
    """Wait (bounded) until ticks ``first``..``last`` reached every member, then count."""
    expected = {f"res{i}" for i in range(1, MEMBERS + 1)}
    wanted = {f"hello from tick{n}": n for n in range(first, last + 1)}

    def tally() -> tuple[Counter[tuple[str, int]], set[int]]:
        got: Counter[tuple[str, int]] = Counter()
        for parts in f.members.lines("RECV"):
            n = wanted.get(" ".join(parts[2:]))
            if n is not None:
                got[(parts[1], n)] += 1
        return got, set(f.ticker.sent())

    deadline = time.monotonic() + DELIVERY_SECONDS
    while True:
        got, sent = tally()
        done = all((m, n) in got for n in range(first, last + 1) if n in sent for m in expected)
        if (done and set(wanted.values()) <= sent) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = Deliveries(first, last, unsent=sorted(set(wanted.values()) - sent))
    for n in range(first, last + 1):
        if n in sent and (missing := {m for m in expected if (m, n) not in got}):
            out.missed[n] = missing
    out.duplicates = sum(c - 1 for c in got.values())
    return out


@dataclass
class Result:
    """One scenario's outcome (the benchmark's row)."""

    scenario: str
    moved: int
    """Members that had to move (on a stopped server)."""
    lost: int
    """Members not on a live server, or counted in a MembersNotMoved or MembersDropped
    Event."""
    settled_seconds: float
    """From the disruption until every member was on a live server and the fleet ready."""
    ticks: Deliveries
    note: str = ""


def counted(messages: list[str]) -> int:
    """Members counted in MembersNotMoved ("... could move N members ...") and
    MembersDropped ("... sessions of N members ...") Event messages."""
    return sum(int(m.split(" members", 1)[0].rsplit(" ", 1)[1]) for m in messages)


def _lost(f: Fleet, events_before: set[str]) -> int:
    where = f.members.locations()
    live = set(f.ips().values())
    stranded = sum(1 for ip in where.values() if ip not in live) + MEMBERS - len(where)
    reported = [m for m in f.lost_events() if m not in events_before]
    return max(stranded, counted(reported))


Disruption = Callable[[Fleet], tuple[set[str], str]]
"""Starts a disruption; returns (members that must move, a note)."""


def run(f: Fleet, name: str, disrupt: Disruption) -> Result:
    """Disrupt, wait until settled, count members and ticks."""
    settle(f)
    events_before = set(f.lost_events())
    first = f.ticker.last() + 1
    started = time.monotonic()
    must_move, note = disrupt(f)
    settle(f)
    settled = time.monotonic() - started
    last = f.ticker.last()
    return Result(
        name, len(must_move), _lost(f, events_before), settled, deliveries(f, first, last), note
    )


# ---- the disruptions ------------------------------------------------------------------


def _wait_gone(f: Fleet, name: str, uid: str | None, timeout: float = GRACE + 15) -> float:
    started = time.monotonic()
    wait_for(f"{name} to exit", lambda: f.uid(name) != uid, timeout=timeout)
    return time.monotonic() - started


def delete_pod(f: Fleet) -> tuple[set[str], str]:
    """(b) ``kubectl delete pod`` of the busiest node."""
    victim, _, on_victim = f.busiest_node()
    uid = f.uid(victim)
    f.kube.kubectl("delete", "pod", victim, "-n", NS, "--wait=false")
    took = _wait_gone(f, victim, uid)
    return on_victim, f"{victim} gone after {took:.1f}s"


def evict_node(f: Fleet) -> tuple[set[str], str]:
    """(a) the eviction API (as ``kubectl drain``) on the busiest node, within the
    PodDisruptionBudget."""
    wait_for(
        "the budget to allow one disruption",
        lambda: (
            (b := find_json(f.kube, "pdb", f"{FLEET}-servers", "-n", NS))
            and (b.get("status") or {}).get("disruptionsAllowed") == 1
        ),
        timeout=30,
    )
    victim, _, on_victim = f.busiest_node()
    uid = f.uid(victim)
    allowed, answer = evict(f.kube, NS, victim)
    assert allowed, answer
    took = _wait_gone(f, victim, uid)
    return on_victim, f"{victim} gone after {took:.1f}s"


def roll_nodes(f: Fleet) -> tuple[set[str], str]:
    """(c) a node template change: every node rolls over, one at a time."""
    old = {p["metadata"]["uid"]: p for p in pods(f.kube, NS, "node")}
    where = f.members.locations()
    old_ips = {(p.get("status") or {}).get("podIP") for p in old.values()}
    must_move = {m for m, ip in where.items() if ip in old_ips}
    f.template_changes += 1
    patch = (
        '{"spec":{"nodeTemplate":{"env":[{"name":"ROLLOUT_MARK","value":"'
        f"{f.template_changes}"
        '"}]}}}'
    )
    f.kube.kubectl("patch", "sipfleet", FLEET, "-n", NS, "--type=merge", "-p", patch)
    most = 0
    started = time.monotonic()
    while True:
        found = pods(f.kube, NS)
        most = max(most, sum(1 for p in found if p["metadata"].get("deletionTimestamp")))
        if not {p["metadata"]["uid"] for p in found} & old.keys() and f.all_ready():
            break
        assert time.monotonic() - started < 240, f"rollout stuck: {f.describe()}"
        time.sleep(0.5)
    return must_move, f"3 nodes rolled in {time.monotonic() - started:.1f}s, at most {most} at once"


def operator_killed_during(disrupt: Disruption) -> Disruption:
    """(f) the operator SIGKILLed OPERATOR_KILL_AFTER seconds into ``disrupt`` and
    started again OPERATOR_DOWN_SECONDS later (a new Pod), while the disruption
    goes on."""

    def run_it(f: Fleet) -> tuple[set[str], str]:
        outage = threading.Thread(target=_operator_outage, args=(f,), daemon=True)
        outage.start()
        try:
            must_move, note = disrupt(f)
        finally:
            outage.join(
                OPERATOR_KILL_AFTER + OPERATOR_DOWN_SECONDS + 150
            )  # start() waits for Ready
        return must_move, (
            f"{note}; operator killed {OPERATOR_KILL_AFTER:g}s in, "
            f"back {OPERATOR_DOWN_SECONDS:g}s later"
        )

    return run_it


def _operator_outage(f: Fleet) -> None:
    time.sleep(OPERATOR_KILL_AFTER)
    f.operator.kill()
    time.sleep(OPERATOR_DOWN_SECONDS)
    f.operator.start()


def api_server_down(f: Fleet) -> tuple[set[str], str]:
    """(g) kube-apiserver stopped for API_DOWN_SECONDS in steady state: the servers
    keep serving (the ticks go on), the operator resumes once it is back."""
    plane = ControlPlane(f.kube.state_dir, out=lambda line: None)
    assert plane.stop_component("kube-apiserver"), "kube-apiserver was not running"
    try:
        time.sleep(API_DOWN_SECONDS)
    finally:
        plane.up()
    back = time.monotonic()
    # The operator resumed: it acts on a spec change made after the outage.
    f.kube.kubectl(
        "patch",
        "sipconference",
        "conf",
        "-n",
        NS,
        "--type=merge",
        "-p",
        f'{{"spec":{{"scaling":{{"cooldownSeconds":{3 + f.outages}}}}}}}',
    )
    f.outages += 1

    def observed() -> bool:
        body = find_json(f.kube, "sipconference", "conf", "-n", NS) or {}
        generation = body.get("metadata", {}).get("generation")
        return (
            bool(generation) and (body.get("status") or {}).get("observedGeneration") == generation
        )

    wait_for("the operator to observe a change made after the outage", observed, timeout=60)
    return set(), (
        f"kube-apiserver down {API_DOWN_SECONDS:g}s; the operator acted on a change "
        f"{time.monotonic() - back:.1f}s after it was back"
    )


SCENARIOS: dict[str, Disruption] = {}


def scenario(name: str, disrupt: Disruption) -> None:
    """Register a scenario for the benchmark (names sort in run order)."""
    SCENARIOS[name] = disrupt


scenario("a eviction", evict_node)
scenario("b delete pod", delete_pod)
scenario("c rolling update", roll_nodes)
scenario("f operator killed during eviction", operator_killed_during(evict_node))
scenario("f operator killed during delete pod", operator_killed_during(delete_pod))
scenario("f operator killed during rolling update", operator_killed_during(roll_nodes))
scenario("g API server down 30 s", api_server_down)
