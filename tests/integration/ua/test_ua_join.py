"""Real phones join a group with their default settings (RFC 3264 offer/answer)."""

from __future__ import annotations

import pytest
from agent import PhoneFactory
from conference import one_server
from node_harness import Fleet

pytestmark = pytest.mark.integration

ALL = ["pjsua2", "baresip", "linphone"]
# What each phone shows for the focus's answer (a=inactive, docs/user-agents.md).
SHOWN_STATE = {
    "pjsua2": "held by remote",
    "baresip": "CALL_ESTABLISHED",
    "linphone": "LinphoneCallPausedByRemote",
}


@pytest.mark.parametrize("kind", ALL)
async def test_join_with_default_offer(fleet: Fleet, phone: PhoneFactory, kind: str) -> None:
    """RFC 3264 6: any valid offer gets a valid answer; the phone keeps the call up."""
    conf = await one_server(fleet)
    agent = await phone(kind, "alice")
    await agent.dial(conf.uri())
    await agent.wait_call("confirmed")
    await conf.wait_members(1)
    await agent.stays_up(4.0)
    assert await conf.members() == 1
    assert agent.call_shown() == SHOWN_STATE[kind]


async def test_late_offer_join(fleet: Fleet, phone: PhoneFactory) -> None:
    """RFC 3264 5 / RFC 3261 13.2.1: an INVITE without SDP gets the offer in the 200
    and the answer comes in the ACK; PJSIP ends the call with 406 when there is none."""
    conf = await one_server(fleet)
    agent = await phone("pjsua2", "late")
    await agent.dial(conf.uri(), late_offer=True)
    await agent.wait_call("confirmed")
    await agent.stays_up(4.0)
    assert await conf.members() == 1
