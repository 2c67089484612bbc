"""Fixtures for the real-UA tests: `phone(kind, name, ...)` starts a UA, killed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from agents import KINDS, Agent, PhoneFactory, missing
from edge import Kamailio
from node_harness import free_ports


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[PhoneFactory]:
    """`await phone(kind, name, display=.., transports=("udp",), ip=.., chat_uri=..)`:
    a started UA of `kind` (pjsua2, baresip, linphone); skips when it cannot run here."""
    started: list[Agent] = []

    async def make(
        kind: str,
        name: str,
        *,
        display: str = "",
        transports: tuple[str, ...] = ("udp", "tcp"),
        ip: str = "127.0.0.1",
        chat_uri: str = "",
    ) -> Agent:
        why = missing(kind)
        if why:
            pytest.skip(why)
        port, ctrl = free_ports("127.0.0.1", 2)  # also free on ::1 in practice
        options: dict[str, object] = {}
        if kind == "baresip":
            options = {"ctrl_port": ctrl, "chat_uri": chat_uri}
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
