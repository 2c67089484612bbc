"""A server killed with SIGKILL: another server brings its members back (rejoin.py).

Real sipfleet-node processes and real sipp members (recovered_member.xml: they
accept a re-INVITE in their dialog from a new server, then get a group
MESSAGE from it, the one they missed or a new one, and leave with a BYE to it
in the same dialog; or, when they announced Replaces, replaced_signalling.xml
joining for a sipp UAS phone, replaced_phone.xml, that takes an INVITE with
Replaces); the routing table is pushed as the operator would.
"""

from __future__ import annotations

import asyncio
import signal
import time

from node_harness import Fleet, NodeProc, SippFactory, eventually
from sipfleet.node.rejoin import HOSTED_PERIOD
from sipfleet.node.restore import DIALOG_GRACE, Hosted
from test_node_sipp import GROUP, SENDER, has_members, make_shard, replaces_phones, routes

REPLICAS = "sipfleet_node_replicas_held"
REJOINED = 'sipfleet_node_rejoins_total{method="reinvite",outcome="rejoined"}'


def held(node: NodeProc, count: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return (await node.metrics()).get(REPLICAS) == count

    return check


async def _main_and_node(fleet: Fleet) -> tuple[NodeProc, NodeProc]:
    """The main server and node1, each with a shard of conf1 for 50 and both routed."""
    main = await fleet.start("main", "127.0.0.2", "main")
    node = await fleet.start("node1", "127.0.0.3")
    await make_shard(main, 50)
    await make_shard(node, 50)
    await routes(1, (main, 50), (node, 50))
    return main, node


async def _recovered(node: NodeProc, count: int, since: float) -> float:
    """Seconds from `since` (monotonic) until `node` brought `count` members back
    (fails after 10 s of waiting)."""

    async def back() -> bool:
        return (await node.metrics()).get(REJOINED) == count

    await eventually(back, 10, f"{count} members back on {node.name}")
    return time.monotonic() - since


async def test_members_of_a_killed_node_come_back_to_the_main_server(
    fleet: Fleet, sipp: SippFactory
) -> None:
    main, node = await _main_and_node(fleet)
    members = sipp("recovered_member.xml", node.target, "conf1-node1", "orph", calls=10, rate=20)
    await eventually(has_members(node, 10), what="10 members on node1")
    await eventually(held(main, 10), what="main holding the 10 dialogs")
    node.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    # A group message while they are away: main forwards it to the dead node1 and
    # keeps it; each member brought back gets it then, in its adopted dialog, and
    # leaves with a BYE to main (CSeq checked, tags as before the crash).
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    took = await _recovered(main, 10, since=killed)
    print(f"10 members of a SIGKILLed node back on main in {took:.2f} s")
    assert took < 5
    assert await members.wait() == 0, members.report()
    assert members.successful() == 10
    metrics = await main.metrics()
    assert metrics[REJOINED] == 10
    assert metrics['sipfleet_node_orphaned_members_total{reason="silent"}'] == 10
    assert metrics["sipfleet_node_replayed_deliveries_total"] == 10
    await eventually(has_members(main, 0), what="every recovered member left main")


async def test_members_brought_back_beyond_the_holders_capacity_are_counted(
    fleet: Fleet, sipp: SippFactory
) -> None:
    """The holder takes every orphan even when its shard is full (refusing would lose
    it) and counts those beyond its capacity; new joins meanwhile go to room elsewhere."""
    main = await fleet.start("main", "127.0.0.2", "main")
    node = await fleet.start("node1", "127.0.0.3")
    await make_shard(main, 2)
    await make_shard(node, 50)
    await routes(1, (main, 2), (node, 50))
    members = sipp("recovered_member.xml", node.target, "conf1-node1", "over", calls=5, rate=20)
    await eventually(has_members(node, 5), what="5 members on node1")
    await eventually(held(main, 5), what="main holding the 5 dialogs")
    node.proc.send_signal(signal.SIGKILL)
    await _recovered(main, 5, since=time.monotonic())
    metrics = await main.metrics()
    assert metrics['sipfleet_node_rejoined_over_capacity_total{group="sip:conf1@example.com"}'] == 3
    assert await main.members(GROUP) == 5
    members.kill()


async def test_members_of_a_killed_main_server_come_back_to_its_buddy(
    fleet: Fleet, sipp: SippFactory
) -> None:
    main, node = await _main_and_node(fleet)
    members = sipp("recovered_member.xml", main.target, "conf1", "orph", calls=8, rate=20)
    await eventually(has_members(main, 8), what="8 members on main")
    await eventually(held(node, 8), what="node1 (main's buddy) holding the 8 dialogs")
    main.proc.send_signal(signal.SIGKILL)
    started = time.monotonic()
    # The main server restarts (a new process, as a container restart) and is set up
    # again as the operator would; its first replication batch to node1 names a new
    # instance, which is how node1 learns of the restart before the silence deadline.
    main = await fleet.start("main", "127.0.0.2", "main")
    await make_shard(main, 50)
    await routes(2, (main, 50), (node, 50))
    took = await _recovered(node, 8, since=started)
    print(f"8 members of a SIGKILLed main server back on node1 in {took:.2f} s")
    assert took < 5
    metrics = await node.metrics()
    assert metrics[REJOINED] == 8
    # The group is whole again behind the new main server: a message sent through it
    # reaches the recovered members on node1, who then leave node1.
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    assert await members.wait() == 0, members.report()
    assert members.successful() == 8
    await eventually(has_members(node, 0), what="every recovered member left node1")


async def test_members_announcing_replaces_come_back_with_an_invite_with_replaces(
    fleet: Fleet, sipp: SippFactory
) -> None:
    """Their phones (a sipp UAS, replaced_phone.xml) get an INVITE with Replaces naming
    the dead dialog (RFC 3891 3), answer it, and get the group's messages from main."""
    main, node = await _main_and_node(fleet)
    phones = await replaces_phones(sipp, 5, joined=node, user="conf1-node1", moved_to=main)
    await eventually(held(main, 5), what="main holding the 5 dialogs")
    node.proc.send_signal(signal.SIGKILL)
    await eventually(has_members(main, 5), 10, "5 members back on main")
    metrics = await main.metrics()
    assert metrics['sipfleet_node_rejoins_total{method="replaces",outcome="rejoined"}'] == 5
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    # Each phone's BYE to the dead node is not answered (sipp counts it apart).
    await phones.wait_successful(5)


async def test_a_stalled_node_lets_its_taken_over_members_go_without_bye(
    fleet: Fleet, sipp: SippFactory
) -> None:
    """A false alarm: node1 stops (SIGSTOP) for longer than the silence deadline, main
    adopts its members' dialogs; when node1 resumes, main answers its next batch 410
    and node1 lets the members go without a BYE (which would end the adopted dialogs)."""
    main, node = await _main_and_node(fleet)
    members = sipp("recovered_member.xml", node.target, "conf1-node1", "slow", calls=6, rate=20)
    await eventually(has_members(node, 6), what="6 members on node1")
    await eventually(held(main, 6), what="main holding the 6 dialogs")
    node.proc.send_signal(signal.SIGSTOP)
    try:
        await _recovered(main, 6, since=time.monotonic())
    finally:
        node.proc.send_signal(signal.SIGCONT)
    await eventually(has_members(node, 0), 10, "node1 letting its members go")
    taken = 'sipfleet_node_members_removed_total{reason="taken_over"}'
    assert (await node.metrics())[taken] == 6
    # Nobody got a BYE (the scenario would fail on one): main delivers to all of them.
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    assert await members.wait() == 0, members.report()
    assert members.successful() == 6


def _hosted(fleet: Fleet, name: str) -> tuple[str, str]:
    """--hosted-file in the test's directory: it outlives a killed process, as the
    Pod's emptyDir outlives a container restart."""
    return ("--hosted-file", str(fleet.tmp / f"{name}-hosted.json"))


async def test_a_restarted_main_server_answers_503_until_its_group_is_back(
    fleet: Fleet, sipp: SippFactory
) -> None:
    """The restart gap (restore.py): the restarted main server finds its hosted file,
    so a join sent before the operator gave its shard back gets 503 with Retry-After
    (not 404); sipp waits that long, INVITEs again and gets in. A request in a dialog
    it lost gets 503 too (not 481). Its members meanwhile come back to node1 (its
    buddy), and none is counted lost (the probe's sipp is gone by then: its rejoin
    fails, counted by node1)."""
    main = await fleet.start("main", "127.0.0.2", "main", *_hosted(fleet, "main"))
    node = await fleet.start("node1", "127.0.0.3")
    await make_shard(main, 50)
    await make_shard(node, 50)
    await routes(1, (main, 50), (node, 50))
    members = sipp("recovered_member.xml", main.target, "conf1", "orph", calls=6, rate=20)
    await eventually(has_members(main, 6), what="6 members on main")
    await eventually(held(node, 6), what="node1 holding the 6 dialogs")
    await asyncio.sleep(HOSTED_PERIOD + 0.2)  # the hosted file has the 6
    # One more member writes in its dialog 1.5 s after joining, once main has been
    # killed and restarted (well before node1's silence deadline): 503, not 481.
    probe = sipp("dead_dialog_probe.xml", main.target, "conf1", "probe", extra=("-d", "1500"))
    await eventually(has_members(main, 7), what="the probe on main")
    await eventually(held(node, 7), what="node1 holding the 7 dialogs")
    main.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    main = await fleet.start("main", "127.0.0.2", "main", *_hosted(fleet, "main"), same_as=main)
    late = sipp("join_retried.xml", main.target, "conf1", "late", timeout=20)
    assert await probe.wait() == 0, probe.report()  # 503 + Retry-After, not 481
    assert late.proc is not None and late.proc.poll() is None  # refused, waiting to retry
    await make_shard(main, 50)  # the operator's pass comes
    await routes(2, (main, 50), (node, 50))
    assert await late.wait() == 0, late.report()  # 503 + Retry-After, then 200 and BYE
    print(f"a join in the gap got in {time.monotonic() - killed:.2f} s after the kill")
    await _recovered(node, 6, since=killed)
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    assert await members.wait() == 0, members.report()
    state = await main.state()
    assert [s.lost for s in state.shards] == [0]  # node1 held all 6


async def test_a_new_main_pod_answers_503_for_the_groups_the_operator_expects(
    fleet: Fleet, sipp: SippFactory
) -> None:
    """A rolled or evicted main server is a new Pod: its emptyDir is empty, there is no
    hosted file. The operator annotates the Pod with the groups it will host, which
    the kubelet mounts as the expected-groups file: a join before the operator's pass
    gives the shard gets 503 + Retry-After (not 404), waits and gets in."""
    expected = fleet.tmp / "expected-groups"
    expected.write_bytes(Hosted({GROUP: 0}).to_bytes())
    main = await fleet.start(
        "main",
        "127.0.0.2",
        "main",
        *_hosted(fleet, "main"),
        "--expected-groups-file",
        str(expected),
    )
    late = sipp("join_retried.xml", main.target, "conf1", "late", timeout=20)
    await asyncio.sleep(1.0)
    assert late.proc is not None and late.proc.poll() is None, late.report()  # told to wait
    await make_shard(main, 50)  # the operator's pass comes
    await routes(1, (main, 50))
    assert await late.wait() == 0, late.report()  # 503 + Retry-After, then 200 and BYE
    assert [s.lost for s in (await main.state()).shards] == [0]  # nothing to count


async def test_a_server_and_its_holder_dying_together_count_the_members_lost(
    fleet: Fleet, sipp: SippFactory
) -> None:
    """A double failure: node1 (holding main's replicas) and main (holding node1's)
    are killed together. Nobody can bring the members back; each restarted server
    learns from its holder's answer that it held none of them and counts its own
    (the shard's `lost`, which the operator posts as MembersLost)."""
    main = await fleet.start("main", "127.0.0.2", "main", *_hosted(fleet, "main"))
    node = await fleet.start("node1", "127.0.0.3", "node", *_hosted(fleet, "node1"))
    await make_shard(main, 50)
    await make_shard(node, 50)
    await routes(1, (main, 50), (node, 50))
    on_main = sipp("recovered_member.xml", main.target, "conf1", "m", calls=3, rate=20)
    on_node = sipp("recovered_member.xml", node.target, "conf1-node1", "n", calls=4, rate=20)
    await eventually(has_members(main, 3), what="3 members on main")
    await eventually(has_members(node, 4), what="4 members on node1")
    await eventually(held(node, 3), what="node1 holding main's 3")
    await eventually(held(main, 4), what="main holding node1's 4")
    await asyncio.sleep(HOSTED_PERIOD + 0.2)
    main.proc.send_signal(signal.SIGKILL)
    node.proc.send_signal(signal.SIGKILL)
    main = await fleet.start("main", "127.0.0.2", "main", *_hosted(fleet, "main"), same_as=main)
    node = await fleet.start("node1", "127.0.0.3", "node", *_hosted(fleet, "node1"), same_as=node)
    await make_shard(main, 50)
    await make_shard(node, 50)
    await routes(2, (main, 50), (node, 50))

    async def counted() -> bool:
        lost = [s.lost for n in (main, node) for s in (await n.state()).shards]
        return lost == [3, 4]

    await eventually(counted, 10, "main counting 3 lost, node1 4")
    unrecovered = 'sipfleet_node_unrecovered_members_total{group="sip:conf1@example.com"}'
    assert (await main.metrics())[unrecovered] == 3
    assert (await node.metrics())[unrecovered] == 4
    on_main.kill()
    on_node.kill()


async def test_a_group_alone_on_the_main_server_counts_its_members_lost(
    fleet: Fleet, sipp: SippFactory
) -> None:
    """A group on the main server alone has no holder for its replicas: after a crash
    its members are not brought back, and the restarted main server counts them."""
    main = await fleet.start("main", "127.0.0.2", "main", *_hosted(fleet, "main"))
    await make_shard(main, 50)
    await routes(1, (main, 50))
    members = sipp("recovered_member.xml", main.target, "conf1", "alone", calls=3, rate=20)
    await eventually(has_members(main, 3), what="3 members on main")
    await asyncio.sleep(HOSTED_PERIOD + 0.2)
    main.proc.send_signal(signal.SIGKILL)
    main = await fleet.start("main", "127.0.0.2", "main", *_hosted(fleet, "main"), same_as=main)
    await make_shard(main, 50)
    await routes(2, (main, 50))

    async def counted() -> bool:
        return [s.lost for s in (await main.state()).shards] == [3]

    await eventually(counted, DIALOG_GRACE + 5, "main counting its 3 members lost")
    members.kill()


async def test_a_server_killed_again_before_its_groups_are_back_still_knows_them(
    fleet: Fleet, sipp: SippFactory
) -> None:
    """A crash loop: the restarted main server is killed again before the operator gave
    its group back; the next process must still answer 503 for it, not 404."""
    main = await fleet.start("main", "127.0.0.2", "main", *_hosted(fleet, "main"))
    await make_shard(main, 50)
    for _ in range(2):
        main.proc.send_signal(signal.SIGKILL)
        main.proc.wait()
        main = await fleet.start("main", "127.0.0.2", "main", *_hosted(fleet, "main"), same_as=main)
        await asyncio.sleep(0.2)  # long enough for a hosted file rewrite to happen
    refused = sipp("join_refused.xml", main.target, "conf1", "late")
    assert await refused.wait() == 0, refused.report()  # 503 with Retry-After
