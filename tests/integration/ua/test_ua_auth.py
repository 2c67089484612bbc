"""PJSIP (pjsua2 2.15) members of a protected group: they answer the server's SHA-256
digest challenges with their own code, join and chat, and the sender the others see is
the authenticated user (docs/security.md); a wrong password never joins."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent import Agent, PhoneFactory
from conference import GROUP, Conference, admin
from node_harness import Fleet, member_credentials

pytestmark = pytest.mark.integration

PASSWORDS = {"alice": "alice-secret-7", "bob": "bob-secret-9"}


async def protected(fleet: Fleet, tmp: Path) -> Conference:
    """The group on one server with credentials: its default policy is authenticated."""
    credentials = member_credentials(tmp, PASSWORDS)
    main = await fleet.start("main", "127.0.0.68", "main", "--credentials-file", str(credentials))
    await admin(main, "POST", "/v1/shards", {"group": GROUP, "capacity": 10})
    return Conference(main)


async def member(phone: PhoneFactory, conf: Conference, name: str, password: str) -> Agent:
    agent = await phone("pjsua2", name, domain="example.com", password=password)
    await agent.dial(conf.uri())
    return agent


async def failures(conf: Conference) -> dict[str, float]:
    prefix = 'sipfleet_node_auth_failures_total{reason="'
    metrics = await conf.main.metrics()
    return {k[len(prefix) : -2]: v for k, v in metrics.items() if k.startswith(prefix)}


async def test_members_join_and_chat_with_sha256_digest(
    fleet: Fleet, phone: PhoneFactory, tmp_path: Path
) -> None:
    conf = await protected(fleet, tmp_path)
    bob = await member(phone, conf, "bob", PASSWORDS["bob"])
    alice = await member(phone, conf, "alice", PASSWORDS["alice"])
    await bob.wait_call("confirmed")
    await alice.wait_call("confirmed")
    await conf.wait_members(2)
    await alice.send_message(conf.uri(), "hello team")  # in the call (pjsua2's default)
    shown = await bob.wait_for(lambda e: e["event"] == "message", "alice's message")
    assert shown["body"] == "alice: hello team", shown  # the authenticated user, prefixed
    assert await failures(conf) == {}  # first challenges are not failures


async def test_wrong_password_never_joins(
    fleet: Fleet, phone: PhoneFactory, tmp_path: Path
) -> None:
    conf = await protected(fleet, tmp_path)
    mallory = await member(phone, conf, "alice", "not-her-password")
    ended = await mallory.wait_call("disconnected")
    assert ended.get("status") == 401, ended
    assert await conf.members() == 0
    assert (await failures(conf)).get("bad_response", 0) >= 1
