"""Set-ups of sip-node servers for the real-UA tests (servers from node_harness.Fleet)."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from agent import Agent
from node_harness import TOKEN, Fleet, NodeProc, eventually

GROUP = "sip:conf1@example.com"
USER = "conf1"


async def admin(server: NodeProc, method: str, path: str, body: object = None) -> Any:
    """One admin API call on its wire format (the JSON documented at /openapi.json),
    so these tests do not depend on the Python client's types."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.request(method, server.admin_url + path, json=body) as response,
    ):
        answer = await response.json()
        assert response.status < 300, f"{method} {path}: {response.status} {answer}"
        return answer


async def members(server: NodeProc) -> int:
    """Members of the group on `server`."""
    state = await admin(server, "GET", "/v1/state")
    return sum(int(s["members"]) for s in state["shards"] if s["group"] == GROUP)


@dataclass
class Conference:
    """The group on `main` (and on `node1` when two servers are set up)."""

    main: NodeProc
    node: NodeProc | None = None
    node_uri: str = ""

    def uri(self, server: NodeProc | None = None, transport: str = "") -> str:
        """The group URI a phone dials at `server` (default main)."""
        where = server or self.main
        host = f"[{where.host}]" if ":" in where.host else where.host
        params = f";transport={transport}" if transport else ""
        return f"sip:{USER}@{host}:{where.sip_port}{params}"

    async def members(self, server: NodeProc | None = None) -> int:
        return await members(server or self.main)

    async def wait_members(self, count: int, server: NodeProc | None = None) -> None:
        where = server or self.main

        async def check() -> bool:
            return await members(where) == count

        await eventually(check, 10, f"{count} members on {where.name}")


async def one_server(
    fleet: Fleet,
    capacity: int = 10,
    host: str = "127.0.0.2",
    *,
    default_port: bool = False,
    sender_display: str = "auto",
    conference_display: str | None = None,
) -> Conference:
    """The group on a main server only. `default_port`: the server listens on 5060 of a
    loopback address of its own, for linphone-daemon, whose `message` command drops the
    port of the address it is given and always sends to 5060. `sender_display`: how
    members' phones are shown who wrote a group message (sipfleet-node --sender-display);
    `conference_display`, when given, is the group's own (POST /v1/shards
    sender_display, as the operator sends SipConference.spec.senderDisplay)."""
    mode = ("--sender-display", sender_display)
    if default_port:
        host = loopback_with_free_5060()
        main = await fleet.start("main", host, "main", *mode, "--sip-port", "5060")  # last wins
        main.sip_port = 5060
    else:
        main = await fleet.start("main", host, "main", *mode)
    shard: dict[str, object] = {"group": GROUP, "capacity": capacity}
    if conference_display is not None:
        shard["sender_display"] = conference_display
    await admin(main, "POST", "/v1/shards", shard)
    return Conference(main)


def loopback_with_free_5060() -> str:
    """A 127.0.50.x address whose SIP port 5060 is free for UDP and TCP."""
    for last in range(1, 255):
        host = f"127.0.50.{last}"
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind((host, 5060))
                udp.bind((host, 5060))
            except OSError:
                continue
            return host
    raise RuntimeError("no 127.0.50.x address with port 5060 free")


async def two_servers(fleet: Fleet, *, drain_main: bool = False) -> Conference:
    """The group on main and node1, both in the route table; `drain_main` makes main
    redirect every join to node1 (302, RFC 3261 8.1.3.4)."""
    main = await fleet.start("main", "127.0.0.2", "main")
    node = await fleet.start("node1", "127.0.0.3")
    shards = []
    for server in (main, node):
        shards.append(await admin(server, "POST", "/v1/shards", {"group": GROUP, "capacity": 10}))
    table = {
        GROUP: [
            {"server": s.name, "uri": str(shard["uri"]), "state": "active", "free": 10}
            for s, shard in zip((main, node), shards, strict=True)
        ]
    }
    for server in (main, node):
        await admin(server, "PUT", "/v1/routes", {"generation": 1, "groups": table})
    if drain_main:
        await admin(main, "POST", "/v1/drain", {})
    return Conference(main, node, str(shards[1]["uri"]))


async def transfer(conf: Conference, method: str) -> dict[str, object]:
    """Move every member of main to node1 with `method`; the finished job."""
    body = {"group": GROUP, "target": conf.node_uri, "count": 1, "method": method, "rate": 10}
    job = await admin(conf.main, "POST", "/v1/transfers", body)
    deadline = time.monotonic() + 15
    while job["state"] == "running" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        job = await admin(conf.main, "GET", f"/v1/transfers/{job['id']}")
    return job


async def only_on(conf: Conference, server: NodeProc, agent: Agent) -> None:
    """The phone is a member of `server` alone and its call there stays up."""
    other = conf.main if server is conf.node else conf.node
    assert other is not None

    async def moved() -> bool:
        return await members(server) == 1 and await members(other) == 0

    await eventually(moved, 10, f"{agent.kind} a member of {server.name} only")
    await asyncio.sleep(3)
    assert await members(server) == 1, f"{agent.kind} left {server.name} (hung up)"
