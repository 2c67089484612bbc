"""Fan-out measurement: one MESSAGE to a group, time until the last member's 200.

deliveries/s = members / (last member 200 sent - MESSAGE sent), both read from
CLOCK_MONOTONIC (system-wide, so the receiver process and this one agree).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipbench import sipmsg
from sipbench.probe import UdpPeer
from sipbench.procs import BenchError, CpuMeter, Procs
from sipbench.stats import median

BENCH_DIR = Path(__file__).resolve().parent.parent


class MemberReceiver:
    """The receiver process (sipbench.receiver) and its JSON-lines control pipe."""

    def __init__(self, procs: Procs, host: str, port: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(BENCH_DIR))
        self.host, self.port = host, port
        self.proc = procs.start(
            "members",
            [sys.executable, "-m", "sipbench.receiver", host, str(port)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._procs = procs
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.read(10.0)  # {"ready": port}

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not self._sel.select(timeout):
            raise BenchError(
                f"member receiver silent for {timeout:.0f} s\n{self._procs.log_tail('members')}"
            )
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"member receiver exited\n{self._procs.log_tail('members')}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(cmd)
        return self.read(timeout)


@dataclass(frozen=True)
class FanoutRun:
    delivered: int
    to_last_ms: float
    to_first_ms: float
    sender_200_ms: float  # when the sender got its own 200
    # The server's on-CPU seconds from the send until the pause after the run
    # (the members' 200s handled too); NaN when not measured.
    cpu_s: float = math.nan

    @property
    def deliveries_per_s(self) -> float:
        return self.delivered / (self.to_last_ms / 1000.0) if self.to_last_ms > 0 else 0.0


@dataclass(frozen=True)
class Fanout:
    name: str
    members: int
    runs: list[FanoutRun]

    @property
    def median_rate(self) -> float:
        return median([r.deliveries_per_s for r in self.runs])

    @property
    def median_to_last_ms(self) -> float:
        return median([r.to_last_ms for r in self.runs])

    @property
    def cpu_us_per_delivery(self) -> float:
        """The median run's server CPU microseconds per member delivered."""
        return median([1e6 * r.cpu_s / r.delivered for r in self.runs if r.delivered])

    @property
    def complete(self) -> bool:
        return all(r.delivered == self.members for r in self.runs)


@dataclass(frozen=True)
class Group:
    """A group to fan out to: the server, its group URI and the sending member."""

    name: str
    target: tuple[str, int]
    group_uri: str
    sender_uri: str
    members: int
    session_id: int = 0  # the server's process session, for its CPU use (0: not measured)


def measure_once(group: Group, receiver: MemberReceiver, peer: UdpPeer, rep: int) -> FanoutRun:
    """Send one group MESSAGE and wait until every member got it (or 20 s pass)."""
    receiver.call({"cmd": "arm"}, 5.0)
    req = sipmsg.request(
        "MESSAGE", group.group_uri, local=peer.local, from_uri=group.sender_uri,
        to_uri=group.group_uri, call_id=f"fanout-{group.name}-{rep}-{peer.local[1]}",
        body=b"fan-out benchmark " + str(rep).encode(),
    )  # fmt: skip
    receiver.send({"cmd": "wait", "count": group.members, "timeout": 20.0})
    t0 = time.monotonic_ns()
    reply = peer.transact(req, group.target, 10.0)
    t_reply = time.monotonic_ns()
    got = receiver.read(25.0)
    code = sipmsg.status_code(reply) if reply else None
    if code is None or not 200 <= code < 300:
        raise BenchError(f"{group.name}: group MESSAGE answered {code} (None = no answer)")
    count = int(got["count"])
    return FanoutRun(
        delivered=count,
        to_last_ms=(int(got["last_ns"]) - t0) / 1e6 if count else 0.0,
        to_first_ms=(int(got["first_ns"]) - t0) / 1e6 if count else 0.0,
        sender_200_ms=(t_reply - t0) / 1e6,
    )


def measure(
    groups: list[Group], receiver: MemberReceiver, reps: int, pause_s: float = 0.3
) -> list[Fanout]:
    """`reps` fan-outs per group, the groups taking turns (imc, sip-node, imc, ...), so
    that load from other work on the machine hits both alike."""
    runs: dict[str, list[FanoutRun]] = {g.name: [] for g in groups}
    peer = UdpPeer(groups[0].target[0]) if groups else None
    try:
        for rep in range(reps):
            for group in groups:
                assert peer is not None
                meter = CpuMeter({"server": group.session_id}) if group.session_id else None
                run = measure_once(group, receiver, peer, rep)
                time.sleep(pause_s)  # let the server finish the members' transactions
                if meter is not None:
                    run = dataclasses.replace(run, cpu_s=meter.runtime()["server"])
                runs[group.name].append(run)
    finally:
        if peer is not None:
            peer.close()
    return [Fanout(g.name, g.members, runs[g.name]) for g in groups]


def receiver_capacity(receiver: MemberReceiver, count: int) -> float:
    """Deliveries/s the receiver absorbs when this process blasts `count` MESSAGEs at it.

    A lower bound (the Python send loop is part of it); if it is well above both
    servers' fan-out rates, the receiver is not what limits them.
    """
    peer = UdpPeer(receiver.host)
    try:
        uri = f"sip:m@{receiver.host}:{receiver.port}"
        batch = [
            sipmsg.request(
                "MESSAGE",
                uri,
                local=peer.local,
                from_uri="sip:cap@bench",
                to_uri=uri,
                call_id=f"cap-{i}",
                body=b"capacity probe",
            )
            for i in range(count)
        ]
        receiver.call({"cmd": "arm"}, 5.0)
        receiver.send({"cmd": "wait", "count": count, "timeout": 10.0})
        t0 = time.monotonic_ns()
        for data in batch:
            peer.sock.sendto(data, (receiver.host, receiver.port))
        got = receiver.read(15.0)
    finally:
        peer.close()
    if got["count"] < count:
        raise BenchError(f"receiver capacity probe: only {got['count']}/{count} arrived")
    return count / ((int(got["last_ns"]) - t0) / 1e9)
