"""Real phones on one transport only, and over IPv6 (RFC 3261 18, RFC 5118)."""

from __future__ import annotations

import secrets

import pytest
from agent import PhoneFactory
from conference import Conference, one_server
from node_harness import Fleet

pytestmark = pytest.mark.integration

PJSUA_NO_IPV6 = (
    "the pjsua2-python 2.15.1 wheel is built without PJ_HAS_IPV6: pjsua_acc_add asserts "
    "ipv6_sip_use == PJSUA_IPV6_DISABLED and a call to sip:..@[::1] fails with PJ_ERESOLVE"
)


async def write_to_group(
    phone: PhoneFactory, conf: Conference, text: str, ip: str, kind: str = "baresip"
) -> None:
    """A member of `kind` (UDP and TCP) joins and writes `text` to the group."""
    writer = await phone(kind, "wade", chat_uri=conf.uri(), ip=ip)
    await writer.dial(conf.uri())
    await writer.wait_call("confirmed")
    await writer.send_message(conf.uri(), text)


@pytest.mark.parametrize("kind", ["pjsua2", "linphone"])
async def test_tcp_only_member(fleet: Fleet, phone: PhoneFactory, kind: str) -> None:
    """A phone with no UDP joins over TCP: it can ACK the 200 (whose Contact says
    ;transport=tcp, RFC 3261 12.1.1), stays joined and gets group messages over TCP."""
    conf = await one_server(fleet)
    member = await phone(kind, "tina", transports=("tcp",))
    await member.dial(conf.uri(transport="tcp"))
    await member.wait_call("confirmed")
    await conf.wait_members(1)
    text = f"tcp-{secrets.token_hex(4)}"
    await write_to_group(phone, conf, text, "127.0.0.1")
    await member.wait_message(text)
    await member.stays_up(3.0)
    assert await conf.members() == 2


@pytest.mark.parametrize("kind", ["pjsua2", "linphone"])
async def test_udp_only_member_gets_1500_bytes(
    fleet: Fleet, phone: PhoneFactory, kind: str
) -> None:
    """A relayed MESSAGE over 1,300 bytes to a member with no TCP listener falls back
    to UDP (RFC 3261 18.1.1) and arrives whole; the member stays joined."""
    conf = await one_server(fleet)
    member = await phone(kind, "ursa", transports=("udp",))
    await member.dial(conf.uri())
    await member.wait_call("confirmed")
    text = "big-" + secrets.token_hex(748)  # 1,500 characters
    # pjsua2 writes it (over TCP, RFC 3261 18.1.1): baresip 1.0's /message refuses
    # a text this long (message_send: Invalid argument).
    await write_to_group(phone, conf, text, "127.0.0.1", "pjsua2")
    got = await member.wait_message(text)
    assert got["body"].endswith(text), "the text arrived cut"
    await member.stays_up(3.0)
    assert await conf.members() == 2


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("pjsua2", marks=pytest.mark.skip(reason=PJSUA_NO_IPV6)),
        "baresip",
        "linphone",
    ],
)
async def test_ipv6_member(fleet: Fleet, phone: PhoneFactory, kind: str) -> None:
    """A server on ::1 and phones on ::1: URIs carry [::1] (RFC 5118 4.1), the phone
    ACKs and stays joined, and gets group messages."""
    conf = await one_server(fleet, host="::1")
    member = await phone(kind, "ivan", ip="::1", chat_uri=conf.uri())
    await member.dial(conf.uri())
    await member.wait_call("confirmed")
    await conf.wait_members(1)
    text = f"v6-{secrets.token_hex(4)}"
    await write_to_group(phone, conf, text, "::1")
    await member.wait_message(text)
    await member.stays_up(3.0)
    assert await conf.members() == 2


@pytest.mark.parametrize("host", ["localhost", "phone.invalid"])
async def test_host_name_contact(fleet: Fleet, phone: PhoneFactory, host: str) -> None:
    """A phone whose Contact names a host, not an address: `localhost` is resolved
    without DNS (RFC 6761 6.3, RFC 3263) and the phone gets group messages; a name
    that cannot resolve (`.invalid`, RFC 6761 6.4, as WebRTC phones use) is refused at
    join with a 4xx, never accepted and lost later."""
    conf = await one_server(fleet)
    member = await phone("pjsua2", "hana", contact_host=host)
    await member.dial(conf.uri())
    if host == "localhost":
        await member.wait_call("confirmed")
        text = f"host-{secrets.token_hex(4)}"
        await write_to_group(phone, conf, text, "127.0.0.1")
        await member.wait_message(text)
        await member.stays_up(2.0)
        assert await conf.members() == 2
    else:
        ended = await member.wait_call("disconnected")
        assert 400 <= ended["status"] < 500, ended
        assert await conf.members() == 0
