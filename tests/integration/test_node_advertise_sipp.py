"""A real UA (sipp) behind a NAT-like relay: the server listens on 127.0.0.3 and
advertises the relay's address, as it would a NodePort or host port.

The relay stands in for the DNAT of kube-proxy: it forwards each datagram from
127.0.0.5:R to the server's listen address and records the request lines. sipp
sends every request to the address on its command line (the relay) whatever the
Request-URI says, so the relay alone would pass without advertising; what fails
without it is the Request-URI of the ACK and BYE, which sipp takes from the
200's Contact. So this proves: a UA nobody here wrote follows the advertised
Contact, and the server takes in-dialog requests addressed to its advertised
address. Responses go back by Via (sipp's own address), not through the relay.
A relay that replaced the source address (SNAT, as kube-proxy does for a
NodePort of policy Cluster) made the server answer a port nobody listens on
(sipp sends no `rport`): kubernetes #18933's trap, see docs/install.md. The
real-cluster e2e is where kube-proxy's own path is tested.
"""

from __future__ import annotations

import asyncio

from node_harness import Fleet, NodeProc, SippFactory, eventually, free_port

GROUP = "sip:conf1@example.com"
PUBLIC = "127.0.0.5"


class Relay(asyncio.DatagramProtocol):
    """Forwards datagrams to `upstream` through `out`, a socket on the client's own
    address (127.0.0.1): the source address is kept, as with a NodePort of
    externalTrafficPolicy Local; records the request lines."""

    def __init__(self, upstream: tuple[str, int], out: asyncio.DatagramTransport) -> None:
        self.upstream, self.out = upstream, out
        self.lines: list[str] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        if not line.startswith("SIP/2.0"):
            self.lines.append(line)
        self.out.sendto(data, self.upstream)


async def test_sipp_follows_the_advertised_contact_through_a_relay(
    fleet: Fleet, sipp: SippFactory
) -> None:
    relay_port = free_port(PUBLIC)
    main = await fleet.start(
        "main",
        "127.0.0.3",
        "main",
        "--advertise-host",
        PUBLIC,
        "--advertise-udp-port",
        str(relay_port),
    )
    async with main.client() as client:
        shard = await client.ensure_shard(GROUP, 10)
    assert shard["uri"] == f"sip:conf1-main@{PUBLIC}:{relay_port}"
    loop = asyncio.get_running_loop()
    out, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    transport, relay = await loop.create_datagram_endpoint(
        lambda: Relay(("127.0.0.3", main.sip_port), out), local_addr=(PUBLIC, relay_port)
    )
    try:
        peer = sipp("join_ack_bye.xml", f"{PUBLIC}:{relay_port}", "conf1", "m")
        assert await peer.wait() == 0, peer.report()
        await eventually(
            lambda: _members_zero(main), what="the member left by BYE through the relay"
        )
    finally:
        transport.close()
        out.close()
    advertised = f"sip:conf1-main@{PUBLIC}:{relay_port}"
    methods = {line.split()[0]: line.split()[1] for line in relay.lines}
    assert set(methods) == {"INVITE", "ACK", "BYE"}, relay.lines
    assert methods["ACK"] == advertised and methods["BYE"] == advertised
    metrics = await main.metrics()
    assert metrics['sipfleet_node_members_removed_total{reason="bye_received"}'] == 1


async def _members_zero(node: NodeProc) -> bool:
    return await node.members(GROUP) == 0
