"""Real phones moved between servers: 302 at join (RFC 3261 8.1.3.4), REFER (RFC 3515)
and an INVITE with Replaces from the new server (RFC 3891)."""

from __future__ import annotations

import pytest
from agent import PhoneFactory
from conference import GROUP, only_on, transfer, two_servers
from node_harness import Fleet

pytestmark = pytest.mark.integration

ALL = ["pjsua2", "baresip", "linphone"]


@pytest.mark.parametrize("kind", ALL)
async def test_redirect_followed(fleet: Fleet, phone: PhoneFactory, kind: str) -> None:
    """A drained main answers 302 with node1's shard as Contact; the phone INVITEs it."""
    conf = await two_servers(fleet, drain_main=True)
    agent = await phone(kind, "rolf")
    await agent.dial(conf.uri())
    await agent.wait_call("confirmed")
    assert conf.node is not None
    await only_on(conf, conf.node, agent)
    metrics = await conf.main.metrics()
    assert metrics[f'sipfleet_node_redirects_total{{group="{GROUP}"}}'] == 1


@pytest.mark.parametrize("kind", ALL)
async def test_refer_followed(fleet: Fleet, phone: PhoneFactory, kind: str) -> None:
    """main REFERs the phone to node1's shard; the phone INVITEs node1, and its old
    dialog with main ends."""
    conf = await two_servers(fleet)
    agent = await phone(kind, "tess")
    await agent.dial(conf.uri())
    await agent.wait_call("confirmed")
    await conf.wait_members(1)
    job = await transfer(conf, "refer")
    assert (job["state"], job["moved"], job["failed"]) == ("done", 1, 0), job
    assert conf.node is not None
    await only_on(conf, conf.node, agent)


@pytest.mark.parametrize("kind", ALL)
async def test_refer_to_server_replaces(fleet: Fleet, phone: PhoneFactory, kind: str) -> None:
    """node1 INVITEs the phone with Replaces (RFC 3891) where the phone announced
    Supported: replaces (PJSIP, liblinphone), and moves it with REFER otherwise
    (baresip 1.0); either way the phone never rings with a new call."""
    conf = await two_servers(fleet)
    agent = await phone(kind, "ulla")
    await agent.dial(conf.uri())
    await agent.wait_call("confirmed")
    await conf.wait_members(1)
    job = await transfer(conf, "refer-to-server")
    assert (job["state"], job["moved"], job["failed"]) == ("done", 1, 0), job
    assert conf.node is not None
    await only_on(conf, conf.node, agent)
    ringing = [e for e in agent.events if e["event"] == "call" and e["state"] == "incoming"]
    answered = agent.calls("confirmed")
    assert not ringing or len(answered) >= 2, f"{kind} rang with a new call: {ringing}"
