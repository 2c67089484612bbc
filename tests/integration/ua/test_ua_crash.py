"""Real phones whose server is killed (SIGKILL): the main server, which holds their
dialogs' replicas, brings them back without their users doing anything: an INVITE
with Replaces (RFC 3891) where the phone announced it (PJSIP, liblinphone), a
re-INVITE in the dead dialog (RFC 3261 14) otherwise (baresip 1.0)."""

from __future__ import annotations

import signal

import pytest
from agent import PhoneFactory
from conference import two_servers
from node_harness import Fleet, eventually

pytestmark = pytest.mark.integration

METHOD = {"pjsua2": "replaces", "baresip": "reinvite", "linphone": "replaces"}


@pytest.mark.parametrize("kind", list(METHOD))
async def test_phone_of_a_killed_node_comes_back(
    fleet: Fleet, phone: PhoneFactory, kind: str
) -> None:
    conf = await two_servers(fleet)
    node = conf.node
    assert node is not None
    agent = await phone(kind, "vera")
    await agent.dial(conf.uri(node))
    await agent.wait_call("confirmed")
    await conf.wait_members(1, node)

    async def held() -> bool:
        return (await conf.main.metrics()).get("sipfleet_node_replicas_held") == 1

    await eventually(held, 10, "main holding the phone's dialog")
    node.proc.send_signal(signal.SIGKILL)
    await conf.wait_members(1)  # within 10 s: 3 s of silence, then the INVITE
    rejoined = f'sipfleet_node_rejoins_total{{method="{METHOD[kind]}",outcome="rejoined"}}'
    assert (await conf.main.metrics())[rejoined] == 1
    ringing = [e for e in agent.events if e["event"] == "call" and e["state"] == "incoming"]
    assert not ringing or len(agent.calls("confirmed")) >= 2, f"{kind} rang: {ringing}"
    # It is in the group again: a group message from a PJSIP phone joined at main
    # reaches it there.
    writer = await phone("pjsua2", "walt")
    await writer.dial(conf.uri())
    await writer.wait_call("confirmed")
    await conf.wait_members(2)
    await writer.send_message(conf.uri(), f"welcome back {kind}")
    await agent.wait_message(f"welcome back {kind}")
    assert await conf.members() == 2, f"{kind} left the group after coming back"
