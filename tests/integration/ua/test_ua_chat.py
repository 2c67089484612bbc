"""Group chat with real phones: each UA's way of chatting reaches the others, and each
receiving UA shows who wrote the message (issue 8 item 5)."""

from __future__ import annotations

import secrets

import pytest
from agents import Agent, PhoneFactory
from conference import Conference, one_server
from node_harness import Fleet

pytestmark = pytest.mark.integration

SDP = "issue 8 item 1: the answer to a dynamic-first offer lacks its a=rtpmap"
SENDER = "issue 8 item 5: phones show the group URI, not who wrote the message"


def xfail(kind: str, *reasons: str) -> object:
    return pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason="; ".join(reasons)))


async def joined(phone: PhoneFactory, conf: Conference, kind: str, name: str) -> Agent:
    """A phone of `kind` in the group, with chat addressed to the group URI."""
    agent = await phone(kind, name, display=f"{name.title()} Q", chat_uri=conf.uri())
    await agent.dial(conf.uri())
    await agent.wait_call("confirmed")
    return agent


def shows_sender(event: dict[str, object], name: str) -> bool:
    """The receiving UA surfaces the sender: in what it shows as the sender, or in the
    text it shows (a 'Name: text' prefix), by user part or display name."""
    surfaced = f"{event['shown']}\n{event['body']}".lower()
    return name in surfaced or f"{name} q" in surfaced


@pytest.mark.parametrize(
    "kind", [xfail("pjsua2", SDP, SENDER), xfail("baresip", SENDER), xfail("linphone", SDP, SENDER)]
)
async def test_receiver_shows_sender(fleet: Fleet, phone: PhoneFactory, kind: str) -> None:
    """baresip writes to the group; the receiving phone shows the text and who wrote it."""
    conf = await one_server(fleet)
    reader = await joined(phone, conf, kind, "rita")
    writer = await joined(phone, conf, "baresip", "wendy")
    await conf.wait_members(2)
    text = f"hi-{secrets.token_hex(4)}"
    await writer.send_message(conf.uri(), text)
    got = await reader.wait_message(text)
    assert shows_sender(got, "wendy"), got
    assert not reader.calls("disconnected")


@pytest.mark.parametrize("kind", ["baresip", xfail("pjsua2", SDP), xfail("linphone", SDP)])
async def test_each_ua_chat_reaches_the_group(fleet: Fleet, phone: PhoneFactory, kind: str) -> None:
    """Each UA chats its own way (pjsua2 in the dialog, baresip and linphone out of
    dialog from the AOR that joined); a baresip member gets the text."""
    conf = await one_server(fleet, default_port=kind == "linphone")
    reader = await joined(phone, conf, "baresip", "rita")
    writer = await joined(phone, conf, kind, "wendy")
    await conf.wait_members(2)
    text = f"hi-{secrets.token_hex(4)}"
    await writer.send_message(conf.uri(), text)
    await reader.wait_message(text)
    assert not writer.messages(), "the sender does not get its own message back"
