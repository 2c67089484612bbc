"""sipfleet-node against real sipp members: join, fan-out, redirect, REFER transfer, drain."""

from __future__ import annotations

import asyncio

import pytest
from node_harness import Fleet, NodeProc, Sipp, SippFactory, eventually, free_port
from sipfleet.node.admin_types import RouteEntry, TransferRequest, TransferState

GROUP = "sip:conf1@example.com"
SENDER = {"send": "1"}  # member.xml: send the group MESSAGE instead of waiting for it


async def routes(generation: int, *entries: tuple[NodeProc, int]) -> None:
    """Push the same table to every server: the group on `entries` in this order."""
    table = {GROUP: [RouteEntry(n.name, await shard_uri(n), "active", free) for n, free in entries]}
    for node, _ in entries:
        async with node.client() as client:
            await client.put_routes(generation, table)


async def shard_uri(node: NodeProc) -> str:
    state = await node.state()
    return next(s.uri for s in state.shards if s.group == GROUP)


async def make_shard(node: NodeProc, capacity: int) -> str:
    async with node.client() as client:
        shard = await client.ensure_shard(GROUP, capacity)
    return shard.uri


def has_members(node: NodeProc, count: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await node.members(GROUP) == count

    return check


async def members_on_node1(
    fleet: Fleet,
    sipp: SippFactory,
    tag: str,
    count: int,
    node_args: tuple[str, ...] = (),
    main_free: int = 50,
) -> tuple[NodeProc, NodeProc, str, Sipp]:
    """main (127.0.0.2) and node1 (127.0.0.3) share conf1, with `count` sipp members
    (member_transfer.xml, Refer-Sub) joined at node1; main announces `main_free`
    room. (main, node1, main's shard URI, the members)."""
    main = await fleet.start("main", "127.0.0.2", "main")
    node = await fleet.start("node1", "127.0.0.3", "node", *node_args)
    main_uri = await make_shard(main, 50)
    await make_shard(node, 50)
    await routes(1, (main, main_free), (node, 50))
    members = sipp(
        "member_transfer.xml",
        node.target,
        "conf1-node1",
        tag,
        calls=count,
        rate=20,
        sets={"refersub": "true"},
    )
    await eventually(has_members(node, count), what=f"{count} members on node1")
    return main, node, main_uri, members


async def replaces_phones(
    sipp: SippFactory, count: int, *, joined: NodeProc, user: str, moved_to: NodeProc
) -> Sipp:
    """`count` members whose UA announced Replaces (RFC 3891), as two sipp peers:
    signalling (replaced_signalling.xml) joins `user` at `joined` for a phone, a sipp
    UAS (replaced_phone.xml) that answers the INVITE with Replaces `moved_to` sends
    it, then gets the group's messages from there. The phones may take 2 * `count`
    calls: a phone's BYE on the replaced dialog can draw a 200 that the sipp UAS takes
    for a new call. Returns the phones once every join is done."""
    phone_port = free_port("127.0.0.1")
    phones = sipp(
        "replaced_phone.xml",
        "",
        "unused",
        "phone",
        calls=2 * count,
        port=phone_port,
        keys={
            "oldhost": joined.host,
            "oldport": str(joined.sip_port),
            "newhost": moved_to.host,
            "newport": str(moved_to.sip_port),
        },
    )
    joins = sipp(
        "replaced_signalling.xml",
        joined.target,
        user,
        "rep",
        calls=count,
        rate=10,
        keys={"phoneport": str(phone_port)},
    )
    assert await joins.wait() == 0, joins.report()
    return phones


async def test_message_reaches_49_other_members(fleet: Fleet, sipp: SippFactory) -> None:
    main = await fleet.start("main", "127.0.0.2", "main")
    await make_shard(main, 100)
    receivers = sipp("member.xml", main.target, "conf1", "recv", calls=49, rate=25)
    await eventually(has_members(main, 49), what="49 members joined")
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    assert await receivers.wait() == 0, receivers.report()
    assert receivers.successful() == 49  # each sipp call got the MESSAGE and answered 200
    metrics = await main.metrics()
    assert metrics["sipfleet_node_messages_in_total"] == 1
    assert metrics["sipfleet_node_messages_out_total"] == 49
    assert metrics["sipfleet_node_delivery_failures_total"] == 0
    assert metrics["sipfleet_node_fanout_seconds_count"] == 1
    await eventually(has_members(main, 0), what="everyone left")


async def test_redirect_past_capacity_and_tree_delivery(fleet: Fleet, sipp: SippFactory) -> None:
    main = await fleet.start("main", "127.0.0.2", "main")
    node = await fleet.start("node1", "127.0.0.3")
    await make_shard(main, 5)
    await make_shard(node, 50)
    await routes(1, (main, 0), (node, 50))
    # 9 receivers: 5 fill main, 4 are sent to node1 with 302 and follow the Contact.
    receivers = sipp("member.xml", main.target, "conf1", "recv", calls=9, rate=10)
    await eventually(has_members(node, 4), what="4 members redirected to node1")
    assert await main.members(GROUP) == 5
    # The sender is redirected too: its MESSAGE goes node1 -> main (root) -> node1.
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    assert await receivers.wait() == 0, receivers.report()
    assert receivers.successful() == 9
    main_metrics, node_metrics = await main.metrics(), await node.metrics()
    assert main_metrics['sipfleet_node_redirects_total{group="sip:conf1@example.com"}'] == 5
    assert main_metrics["sipfleet_node_messages_out_total"] == 5
    assert node_metrics["sipfleet_node_messages_in_total"] == 1
    assert node_metrics["sipfleet_node_messages_out_total"] == 4
    assert main_metrics['sipfleet_node_tree_forwards_total{direction="down",kind="group"}'] == 1
    assert node_metrics['sipfleet_node_tree_forwards_total{direction="up",kind="group"}'] == 1


async def _transfer_all(source: NodeProc, target_uri: str, count: int) -> TransferState:
    async with source.client() as client:
        job = await client.start_transfer(
            TransferRequest(GROUP, target_uri, rate=10.0, count=count)
        )
    return await _wait_transfer(source, job.id)


async def _wait_transfer(source: NodeProc, transfer_id: str) -> TransferState:
    jobs: list[TransferState] = []
    async with source.client() as client:

        async def finished() -> bool:
            jobs.append(await client.transfer(transfer_id))
            return jobs[-1].state != "running"

        await eventually(finished, timeout=30, what="transfer finished")
    return jobs[-1]


@pytest.mark.parametrize("refersub", ["true", "false"])
async def test_refer_transfer_moves_20_members(
    fleet: Fleet, sipp: SippFactory, refersub: str
) -> None:
    main = await fleet.start("main", "127.0.0.2", "main")
    node = await fleet.start("node1", "127.0.0.3")
    await make_shard(main, 20)
    node_uri = await make_shard(node, 50)
    await routes(1, (main, 0), (node, 50))
    # refersub=false: the members answer "Refer-Sub: false" and never NOTIFY (RFC 4488).
    members = sipp(
        "member_transfer.xml",
        main.target,
        "conf1",
        "mover",
        calls=20,
        rate=20,
        sets={"refersub": refersub},
    )
    await eventually(has_members(main, 20), what="20 members on main")
    job = await _transfer_all(main, node_uri, 20)
    assert (job.state, job.moved, job.failed) == ("done", 20, 0), job
    assert await main.members(GROUP) == 0
    assert await node.members(GROUP) == 20
    # A new member joins main and writes: main -> tree -> node1 -> all 20 moved members.
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    assert await members.wait() == 0, members.report()
    assert members.successful() == 20
    metrics = await main.metrics()
    assert metrics['sipfleet_node_transfers_total{outcome="moved"}'] == 20
    assert (await node.metrics())["sipfleet_node_messages_out_total"] == 20


async def test_drain_empties_a_node(fleet: Fleet, sipp: SippFactory) -> None:
    main, node, main_uri, members = await members_on_node1(fleet, sipp, "drained", 8)
    async with node.client() as client:
        state = await client.drain()
    assert state.draining is True
    job = await _transfer_all(node, main_uri, 8)
    assert (job.moved, job.failed) == (8, 0), job
    assert await node.members(GROUP) == 0
    assert await main.members(GROUP) == 8
    # A join at the drained node is redirected to main; the message reaches the 8 there.
    sender = sipp("member.xml", node.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    assert await members.wait() == 0, members.report()
    node_metrics = await node.metrics()
    assert node_metrics['sipfleet_node_redirects_total{group="sip:conf1@example.com"}'] == 1


async def test_refer_to_server_moves_members_with_replaces(fleet: Fleet, sipp: SippFactory) -> None:
    main = await fleet.start("main", "127.0.0.2", "main")
    node = await fleet.start("node1", "127.0.0.3")
    await make_shard(main, 20)
    node_uri = await make_shard(node, 50)
    await routes(1, (main, 0), (node, 50))
    # The phone's BYE on the replaced dialog draws a 200 with the old Call-ID, which the
    # sipp UAS takes for a new call and counts as failed: so count successes, not rc.
    phones = await replaces_phones(sipp, 5, joined=main, user="conf1", moved_to=node)
    await eventually(has_members(main, 5), what="5 members on main")
    async with main.client() as client:
        started = await client.start_transfer(
            TransferRequest(GROUP, node_uri, "refer-to-server", 10.0, count=5)
        )
    job = await _wait_transfer(main, started.id)
    assert (job.state, job.moved, job.failed) == ("done", 5, 0), job
    await eventually(has_members(main, 0), what="old dialogs ended")
    assert await node.members(GROUP) == 5
    sender = sipp("member.xml", main.target, "conf1", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    await phones.wait_successful(5)
    assert phones.successful() == 5
    assert (await main.metrics())["sipfleet_node_s2s_auth_failures_total"] == 0


async def test_unauthenticated_server_request_is_refused(fleet: Fleet, sipp: SippFactory) -> None:
    node = await fleet.start("node1", "127.0.0.3")
    await make_shard(node, 5)
    forged = sipp("forged_s2s.xml", node.target, "conf1-node1", "forger")
    assert await forged.wait() == 0, forged.report()  # the scenario expects 403
    metrics = await node.metrics()
    assert metrics["sipfleet_node_s2s_auth_failures_total"] == 1
    assert metrics["sipfleet_node_messages_out_total"] == 0


async def test_conference_subscription_covers_all_servers(fleet: Fleet, sipp: SippFactory) -> None:
    main = await fleet.start("main", "127.0.0.2", "main")
    node = await fleet.start("node1", "127.0.0.3")
    await make_shard(main, 5)
    await make_shard(node, 5)
    await routes(1, (main, 5), (node, 5))
    watcher = sipp("conference_watcher.xml", main.target, "conf1", "watcher")
    await asyncio.sleep(0.5)  # the full NOTIFY with nobody in it
    # "watched1" joins node1 directly; main learns it over the tree.
    joins = sipp(
        "replaced_signalling.xml",
        node.target,
        "conf1-node1",
        "watched",
        keys={"phoneport": str(free_port("127.0.0.1"))},
    )
    assert await joins.wait() == 0, joins.report()
    assert await watcher.wait() == 0, watcher.report()


async def test_three_level_tree(fleet: Fleet, sipp: SippFactory) -> None:
    """Fanout 1: main -> node1 -> node2. A message from node2 climbs to main, then
    comes down through node1, reaching every member once."""
    servers = [
        await fleet.start("main", "127.0.0.2", "main", "--tree-fanout", "1"),
        await fleet.start("node1", "127.0.0.3", "node", "--tree-fanout", "1"),
        await fleet.start("node2", "127.0.0.4", "node", "--tree-fanout", "1"),
    ]
    for server in servers:
        await make_shard(server, 10)
    await routes(1, *((s, 10) for s in servers))
    receivers = [
        sipp("member.xml", s.target, f"conf1-{s.name}", f"r{s.name}", calls=2, rate=10)
        for s in servers
    ]
    for server in servers:
        await eventually(has_members(server, 2), what=f"2 members on {server.name}")
    sender = sipp("member.xml", servers[2].target, "conf1-node2", "send", sets=SENDER)
    assert await sender.wait() == 0, sender.report()
    for peer in receivers:
        assert await peer.wait() == 0, peer.report()
        assert peer.successful() == 2
    out = [(await s.metrics())["sipfleet_node_messages_out_total"] for s in servers]
    assert out == [2, 2, 2]
    node1 = await servers[1].metrics()
    assert node1['sipfleet_node_tree_forwards_total{direction="down",kind="group"}'] == 1
