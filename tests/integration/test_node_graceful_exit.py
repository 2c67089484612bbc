"""SIGTERM makes a server move its members away before it exits (sip-node runner).

Real sipfleet-node processes and real sipp members (member_transfer.xml: they
follow a REFER, RFC 3515); the routing table is pushed as the operator would.
"""

from __future__ import annotations

import asyncio
import signal
import time

from node_harness import Fleet, NodeProc, SippFactory, eventually
from test_node_sipp import GROUP, SENDER, members_on_node1

UNMOVED = f'sipfleet_node_unmoved_members_total{{group="{GROUP}"}}'


async def _exit(node: NodeProc, timeout: float) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds until the process was gone)."""
    started = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    while node.proc.poll() is None:
        assert time.monotonic() - started < timeout, f"{node.name} still running"
        await asyncio.sleep(0.05)
    return node.proc.returncode, time.monotonic() - started


async def test_sigterm_moves_every_member_then_exits(fleet: Fleet, sipp: SippFactory) -> None:
    main, node, _, members = await members_on_node1(fleet, sipp, "stay", 8, ("--drain-rate", "10"))
    code, took = await _exit(node, timeout=20)
    assert code == 0
    assert took < 10, f"exit took {took:.1f}s for 8 members at 10/s"
    assert await main.members(GROUP) == 8  # every member moved, none dropped
    assert "graceful exit: every member moved" in node.log.read_text()
    # The moved members still get the group's messages: a sender joins at main.
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    assert await members.wait() == 0, members.report()
    assert members.successful() == 8


async def test_members_that_cannot_move_are_counted_and_ended(
    fleet: Fleet, sipp: SippFactory
) -> None:
    # main is full: no room anywhere
    main, node, _, _ = await members_on_node1(
        fleet, sipp, "stuck", 4, ("--shutdown-seconds", "4"), main_free=0
    )
    node.proc.send_signal(signal.SIGTERM)
    # Budget 4 s minus the 3 s exit reserve: after ~1 s the count is on /metrics.
    counted: dict[str, float] = {}

    async def reported() -> bool:
        nonlocal counted
        counted = await node.metrics()
        return counted.get(UNMOVED, 0) > 0

    await eventually(reported, timeout=3, what="the unmoved members on /metrics")
    assert counted[UNMOVED] == 4
    # A join while it stops, with no room anywhere: 503 with Retry-After, not 480.
    late = sipp("join_refused.xml", node.target, "conf1-node1", "late", timeout=5)
    assert await late.wait() == 0, late.report()
    code, took = await _exit(node, timeout=5)
    assert code == 0
    assert await main.members(GROUP) == 0
    log = node.log.read_text()
    assert "graceful exit ran out of time: 4 members not moved" in log
    assert took < 4, "the process outlived its budget (the kubelet would SIGKILL it)"
