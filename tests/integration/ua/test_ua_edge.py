"""Real phones behind Kamailio with record_route (examples/kamailio/sipfleet-edge.cfg):
every request the server sends in a dialog goes through the dialog's route set
(RFC 3261 12.2.1.1), so the edge relays it; none goes straight to the Contact."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from agent import PhoneFactory
from conference import one_server, only_on, transfer, two_servers
from edge import Kamailio
from node_harness import Fleet

pytestmark = pytest.mark.integration

EdgeFactory = Callable[[str, int], Kamailio]
ALL = ["pjsua2", "baresip", "linphone"]


def relayed(edge: Kamailio, method: str, server_host: str) -> list[dict[str, str]]:
    """In-dialog requests of `method` the edge relayed from the server by the route set."""
    return [
        r for r in edge.routed() if r["method"] == method and f"from {server_host}:" in r["rest"]
    ]


@pytest.mark.parametrize("kind", ALL)
async def test_group_message_through_edge(
    fleet: Fleet, phone: PhoneFactory, kamailio: EdgeFactory, kind: str
) -> None:
    """A phone joins through the edge; a group MESSAGE from another member reaches it
    through the edge; its own chat and its BYE reach the group through the edge too."""
    conf = await one_server(fleet)
    edge = kamailio(conf.main.host, conf.main.sip_port)
    via_edge = f"sip:conf1@{edge.uri_host}"
    member = await phone(kind, "erin", chat_uri=via_edge)
    await member.dial(via_edge)
    await member.wait_call("confirmed")
    writer = await phone("baresip", "walt", chat_uri=conf.uri())
    await writer.dial(conf.uri())
    await writer.wait_call("confirmed")
    await conf.wait_members(2)
    text = f"edge-{secrets.token_hex(4)}"
    await writer.send_message(conf.uri(), text)
    await member.wait_message(text)
    assert relayed(edge, "MESSAGE", conf.main.host), edge.routed() + edge.routed("initial")
    assert not edge.unrouted()
    if kind != "linphone":  # linphone-daemon's chat goes to port 5060, not the edge's
        reply = f"back-{secrets.token_hex(4)}"
        await member.send_message(via_edge, reply)  # in the dialog or through the edge
        await writer.wait_message(reply)
    await member.hangup()
    await conf.wait_members(1)
    assert [r for r in edge.routed() if r["method"] == "BYE"], "the phone's BYE skipped the edge"


@pytest.mark.parametrize("kind", ALL)
async def test_refer_through_edge(
    fleet: Fleet, phone: PhoneFactory, kamailio: EdgeFactory, kind: str
) -> None:
    """main REFERs a phone that joined through the edge: the REFER (and the NOTIFYs
    the phone sends back) follow the route set, and the phone ends up on node1."""
    conf = await two_servers(fleet)
    edge = kamailio(conf.main.host, conf.main.sip_port)
    via_edge = f"sip:conf1@{edge.uri_host}"
    member = await phone(kind, "eddy", chat_uri=via_edge)
    await member.dial(via_edge)
    await member.wait_call("confirmed")
    await conf.wait_members(1)
    job = await transfer(conf, "refer")
    assert (job["state"], job["moved"], job["failed"]) == ("done", 1, 0), job
    assert conf.node is not None
    await only_on(conf, conf.node, member)
    assert relayed(edge, "REFER", conf.main.host), edge.routed() + edge.routed("initial")
    assert not edge.unrouted()


@pytest.mark.parametrize("kind", ALL[:1] + ALL[2:])
async def test_tcp_phone_through_edge(
    fleet: Fleet, phone: PhoneFactory, kamailio: EdgeFactory, kind: str
) -> None:
    """A TCP-only phone joins through the edge, which reaches the server over UDP and so
    record-routes twice (RFC 3261 16.6 step 4, RFC 5658): the server's group MESSAGE
    goes back through the edge, which relays it to the phone over TCP."""
    conf = await one_server(fleet)
    edge = kamailio(conf.main.host, conf.main.sip_port)
    via_edge = f"sip:conf1@{edge.uri_host};transport=tcp"
    member = await phone(kind, "tom", transports=("tcp",), chat_uri=via_edge)
    await member.dial(via_edge)
    await member.wait_call("confirmed")
    writer = await phone("baresip", "walt", chat_uri=conf.uri())
    await writer.dial(conf.uri())
    await writer.wait_call("confirmed")
    await conf.wait_members(2)
    text = f"edge-tcp-{secrets.token_hex(4)}"
    await writer.send_message(conf.uri(), text)
    await member.wait_message(text)
    assert relayed(edge, "MESSAGE", conf.main.host), edge.routed() + edge.routed("initial")
    assert not edge.unrouted()
    await member.stays_up(2.0)
