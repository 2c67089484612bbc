"""Fixtures for the real-UA tests: `phone(kind, name, ...)` starts a UA, killed at teardown."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from agent import Agent, PhoneFactory
from agents import KINDS, missing
from edge import Kamailio
from node_harness import free_ports


def sip_port(ip: str, also_next: bool) -> int:
    """A port free for UDP and TCP on `ip`; `also_next`: port + 1 free for TCP too
    (baresip's sip_listen also binds SIP over TLS there)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(100):
        with (
            socket.socket(family, socket.SOCK_STREAM) as tcp,
            socket.socket(family, socket.SOCK_DGRAM) as udp,
            socket.socket(family, socket.SOCK_STREAM) as tls,
        ):
            tcp.bind((ip, 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind((ip, port))
                if also_next:
                    tls.bind((ip, port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free SIP port on {ip}")


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[PhoneFactory]:
    """`await phone(kind, name, display=.., transports=("udp",), ip=.., chat_uri=..,
    contact_host=.., domain=.., password=.., tls_dir=..)`: a started UA of `kind` (pjsua2,
    baresip, linphone); skips when it cannot run here. `contact_host` (pjsua2): a host name
    its Contact carries instead of `ip`; `domain`/`password` (pjsua2): AOR user@domain with
    digest credentials (docs/security.md); `tls_dir` (pjsua2): ca.crt, tls.crt and tls.key
    for transports=("tls",)."""
    started: list[Agent] = []

    async def make(
        kind: str,
        name: str,
        *,
        display: str = "",
        transports: tuple[str, ...] = ("udp", "tcp"),
        ip: str = "127.0.0.1",
        chat_uri: str = "",
        contact_host: str = "",
        domain: str = "",
        password: str = "",
        tls_dir: str = "",
    ) -> Agent:
        why = missing(kind)
        if why:
            pytest.skip(why)
        port = sip_port(ip, also_next=kind == "baresip")
        ctrl = free_ports("127.0.0.1", 1)[0]
        options: dict[str, object] = {}
        if kind == "baresip":
            assert not (contact_host or domain or password), "pjsua2 only: Contact host, AOR"
            options = {"ctrl_port": ctrl, "chat_uri": chat_uri, "tls_dir": tls_dir}
        elif contact_host or domain or password or tls_dir:
            assert kind == "pjsua2", "only the pjsua2 driver names its Contact host or AOR"
            options = {
                "contact_host": contact_host,
                "domain": domain,
                "password": password,
                "tls_dir": tls_dir,
            }
        agent = KINDS[kind](
            name=name,
            display=display or name.title(),
            ip=ip,
            port=port,
            workdir=tmp_path,
            transports=transports,
            **options,  # type: ignore[arg-type]
        )
        started.append(agent)
        await agent.start()
        return agent

    yield make
    for agent in started:
        await agent.stop()
        agent.close()


@pytest.fixture
def kamailio(tmp_path: Path) -> AsyncIterator[Callable[[str, int], Kamailio]]:
    """`kamailio(server_host, server_port)`: a started Record-Routing edge proxy."""
    started: list[Kamailio] = []

    def make(host: str, port: int) -> Kamailio:
        edge = Kamailio(tmp_path, host, port)
        started.append(edge)
        edge.start()
        return edge

    yield make  # type: ignore[misc]
    for edge in started:
        edge.stop()
