"""Group chat with real phones: each UA's way of chatting reaches the others, and what
each receiving UA shows of the sender under each --sender-display mode (issue 8 item 5)."""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest
from agent import Agent, PhoneFactory
from conference import Conference, one_server
from node_harness import Fleet

pytestmark = pytest.mark.integration


async def joined(phone: PhoneFactory, conf: Conference, kind: str, name: str) -> Agent:
    """A phone of `kind` in the group, with chat addressed to the group URI."""
    agent = await phone(kind, name, display=f"{name.title()} Q", chat_uri=conf.uri())
    await agent.dial(conf.uri())
    await agent.wait_call("confirmed")
    return agent


# What each phone surfaces of a group message from "wendy" under each --sender-display
# mode (docs/user-agents.md). "prefix": the text reads "wendy: <text>". "hidden": the
# text arrives but nothing the phone shows names wendy. "raw-cpim": the phone shows the
# whole message/cpim body (RFC 3862 headers and all). "refused": the phone answers 4xx
# and shows nothing (baresip 415: no message/cpim; liblinphone 488: it rejects CPIM
# whose From is not the SIP From, "[CPIM] Sender authentication failed") and stays a
# member.
SHOWN = {
    ("auto", "pjsua2"): "prefix",
    ("auto", "baresip"): "prefix",
    ("auto", "linphone"): "prefix",
    ("prefix", "pjsua2"): "prefix",
    ("prefix", "baresip"): "prefix",
    ("prefix", "linphone"): "prefix",
    ("display-name", "pjsua2"): "hidden",
    ("display-name", "baresip"): "hidden",
    ("display-name", "linphone"): "hidden",
    ("cpim", "pjsua2"): "raw-cpim",
    ("cpim", "baresip"): "refused",
    ("cpim", "linphone"): "refused",
}


# RFC 3862 From-header = "From" ": " [ Formal-name ] "<" URI ">" with
# Formal-name = 1*( Token SP ) / String: a quoted name is followed directly by "<".
CPIM_FROM = re.compile(r'^From: (?:(?:[^\s"<>]+ )+|"(?:[^"\\]|\\.)*")?<sip:wendy@[^>]+>$')


@pytest.mark.parametrize("mode", ["auto", "prefix", "display-name", "cpim"])
@pytest.mark.parametrize("kind", ["pjsua2", "baresip", "linphone"])
async def test_sender_shown(fleet: Fleet, phone: PhoneFactory, kind: str, mode: str) -> None:
    """baresip writes to the group; what the receiving phone shows of the sender is
    the row of SHOWN for the server's --sender-display mode."""
    conf = await one_server(fleet, sender_display=mode)
    reader = await joined(phone, conf, kind, "rita")
    writer = await joined(phone, conf, "baresip", "wendy")
    await conf.wait_members(2)
    text = f"hi-{secrets.token_hex(4)}"
    await writer.send_message(conf.uri(), text)
    expected = SHOWN[(mode, kind)]
    if expected == "refused":
        await asyncio.sleep(2)
        assert not [e for e in reader.messages() if text in e["body"]], reader.messages()
    else:
        got = await reader.wait_message(text)
        surfaced = f"{got['shown']}\n{got['body']}".lower()
        if expected == "prefix":
            assert got["body"] == f"wendy: {text}", got
        elif expected == "hidden":
            assert got["body"] == text and "wendy" not in surfaced, got
        else:
            assert CPIM_FROM.match(got["body"].splitlines()[0]), got
            assert got["ctype"] == "message/cpim" and got["body"].endswith(text), got
    assert not reader.calls("disconnected")
    assert await conf.members() == 2, "a phone that refused a message is still a member"


async def test_the_conference_sender_display_wins(fleet: Fleet, phone: PhoneFactory) -> None:
    """SipConference.spec.senderDisplay (the shard's sender_display) overrides the
    server's --sender-display: with the server on display-name (hidden in baresip) and
    the conference on prefix, baresip shows who wrote the message."""
    conf = await one_server(fleet, sender_display="display-name", conference_display="prefix")
    reader = await joined(phone, conf, "baresip", "rita")
    writer = await joined(phone, conf, "baresip", "wendy")
    await conf.wait_members(2)
    text = f"hi-{secrets.token_hex(4)}"
    await writer.send_message(conf.uri(), text)
    got = await reader.wait_message(text)
    assert got["body"] == f"wendy: {text}", got


@pytest.mark.parametrize("kind", ["baresip", "pjsua2", "linphone"])
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
