"""REFER transfer rate: members moved per second from main to a node, with zero lost.

    .venv/bin/python bench/transfer_rate.py [--members 400] [--rates 100,200,400,1000]

No Kubernetes: two ``sipfleet-node`` processes (main and node) on 127.0.0.201/202,
routes pushed with AdminClient, members (the demo's Crowd: answers REFER with 202
and INVITEs the Refer-To shard) on 127.0.0.203. For each rate, a fresh group:
MEMBERS join on main, one transfer (method refer, count MEMBERS, that rate) moves
them all to the node; the transfer's state is polled every 50 ms until done.
Then: every member must be in a dialog with the node, main must hold none, the node
MEMBERS, no member may have been sent BYE on its current dialog, and a group
MESSAGE from one member must reach all MEMBERS-1 others.
Everything runs on loopback and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from opbench import servers
from opbench.crowd import TimedCrowd
from opbench.servers import Server
from sipbench.procs import BenchError, Procs, exit_on_sigterm
from sipfleet.node.admin_types import RouteEntry, TransferRequest

MAIN_HOST, NODE_HOST, MEMBER_HOST = "127.0.0.201", "127.0.0.202", "127.0.0.203"
POLL = 0.05


@dataclass
class RateResult:
    rate: float
    members: int
    joined: int
    moved: int
    failed: int
    state: str
    seconds: float  # transfer start -> state done (as polled)
    steady: float  # members/s between 10% and 90% moved
    on_node: int
    left_on_main: int
    node_count: int
    dropped: int
    delivered: int

    @property
    def achieved(self) -> float:
        return self.moved / self.seconds if self.seconds > 0 else 0.0

    @property
    def lost(self) -> int:
        return self.members - self.on_node

    def row(self) -> str:
        return (
            f"| {self.rate:g} | {self.members} | {self.moved} | {self.failed} | "
            f"{self.seconds:.2f} | {self.achieved:.0f} | {self.steady:.0f} | {self.lost} | "
            f"{self.dropped} | {self.delivered}/{self.members - 1} |"
        )


HEADER = (
    "| rate asked (/s) | members | moved | failed | seconds | achieved (/s) | "
    "10-90% (/s) | lost | dropped (BYE) | MESSAGE reached |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


class Pair:
    """Main and node with a routing table covering every group made so far."""

    def __init__(self, main: Server, node: Server) -> None:
        self.main, self.node = main, node
        self.generation = 0
        self.groups: dict[str, list[RouteEntry]] = {}

    async def add_group(self, group: str, capacity: int) -> str:
        """Create the group on both servers, push routes; the node's shard URI."""
        main_shard = await self.main.admin.ensure_shard(group, capacity)
        node_shard = await self.node.admin.ensure_shard(group, capacity)
        self.groups[group] = [
            RouteEntry(s.name, shard.uri, "active", capacity)
            for s, shard in ((self.main, main_shard), (self.node, node_shard))
        ]
        self.generation += 1
        for server in (self.main, self.node):
            await server.admin.put_routes(self.generation, self.groups)
        return node_shard.uri

    async def members(self, server: Server, group: str) -> int:
        state = await server.admin.state()
        return sum(s.members for s in state.shards if s.group == group)


def steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Members/s between the first samples at >= 10% and >= 90% moved."""
    lo = next((t for t, m in samples if m >= 0.1 * total), None)
    hi = next((t for t, m in samples if m >= 0.9 * total), None)
    if lo is None or hi is None or hi <= lo:
        return 0.0
    return 0.8 * total / (hi - lo)


async def run_rate(pair: Pair, rate: float, count: int, timeout: float) -> RateResult:
    group = f"sip:xfer{int(rate)}x{int(time.time()) % 10000}@{servers.DOMAIN}"
    node_uri = await pair.add_group(group, count + 10)
    crowd = TimedCrowd(group, (pair.main.host, pair.main.sip_port), host=MEMBER_HOST)
    await crowd.start()
    try:
        joined = await crowd.join_all(count, f"r{int(rate)}m")
        on_main = await pair.members(pair.main, group)
        if joined != count or on_main != count:
            raise BenchError(f"{joined}/{count} joined, main reports {on_main}")
        started = time.monotonic()
        transfer = await pair.main.admin.start_transfer(
            TransferRequest(group, node_uri, "refer", rate, count=count)
        )
        samples: list[tuple[float, int]] = []
        deadline = started + timeout
        while True:
            state = await pair.main.admin.transfer(transfer.id)
            now = time.monotonic()
            samples.append((now, state.moved))
            if state.state != "running" or now > deadline:
                break
            await asyncio.sleep(POLL)
        seconds = now - started
        await crowd.settle(10.0)
        node_host = f"@{pair.node.sip_hostport}"
        on_node = sum(1 for m in crowd.members if m.shard and node_host in m.shard)
        body = f"after transfer at {rate:g}/s"
        sender = crowd.members[0]
        await crowd.chat(sender, body)
        until = time.monotonic() + 5.0
        while crowd.stats.deliveries(body) < count - 1 and time.monotonic() < until:
            await asyncio.sleep(0.05)
        result = RateResult(
            rate=rate,
            members=count,
            joined=joined,
            moved=state.moved,
            failed=state.failed,
            state=state.state,
            seconds=seconds,
            steady=steady_rate(samples, count),
            on_node=on_node,
            left_on_main=await pair.members(pair.main, group),
            node_count=await pair.members(pair.node, group),
            dropped=crowd.stats.dropped,
            delivered=crowd.stats.deliveries(body),
        )
        print_progress(samples, started, count)
        return result
    finally:
        for server in (pair.main, pair.node):
            await server.admin.delete_shard(group)
        await crowd.settle(5.0)
        crowd.close()


def print_progress(samples: list[tuple[float, int]], started: float, total: int) -> None:
    """Moved count every ~0.5 s of the transfer."""
    marks, next_mark = [], 0.0
    for t, moved in samples:
        if t - started >= next_mark:
            marks.append(f"{t - started:.1f}s:{moved}")
            next_mark += 0.5
    print(f"    progress (of {total}): " + " ".join(marks), flush=True)


async def main_async(args: argparse.Namespace) -> list[RateResult]:
    workdir = Path(tempfile.mkdtemp(prefix="opbench-transfer-"))
    print(f"logs in {workdir}", flush=True)
    with Procs(workdir) as procs:
        token = servers.new_token(workdir)
        main = await servers.start(procs, "main", "main", MAIN_HOST, token)
        node = await servers.start(procs, "node", "node1", NODE_HOST, token)
        pair = Pair(main, node)
        results = []
        try:
            for rate in args.rates:
                print(f"rate {rate:g}/s, {args.members} members ...", flush=True)
                result = await run_rate(pair, rate, args.members, args.timeout)
                print(f"    {result.row()}  state={result.state}", flush=True)
                results.append(result)
        finally:
            await main.admin.close()
            await node.admin.close()
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=400, help="members per run")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[100.0, 200.0, 400.0, 1000.0],
        help="comma-separated transfer rates (members/s)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="bound per transfer (s)")
    args = parser.parse_args(argv)
    if args.members < 2 or args.members > 5000:
        parser.error("--members must be between 2 and 5000")
    if any(r <= 0 or r > 10000 for r in args.rates):
        parser.error("--rates must be in (0, 10000]")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        results = asyncio.run(main_async(args))
    except BenchError as err:
        print(f"transfer_rate: {err}", file=sys.stderr)
        return 1
    print()
    print(HEADER)
    for r in results:
        print(r.row())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
