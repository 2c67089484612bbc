"""Fixtures for the sip-node integration tests (helpers live in node_harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from node_harness import Fleet, Sipp, SippFactory


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """Starts sipfleet-node processes; all are stopped at teardown."""
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.stop_all()


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippFactory]:
    """`sipp(scenario, target, service, who, calls=.., rate=.., sets=.., keys=..)` -> a
    started Sipp; all are killed at teardown."""
    started: list[Sipp] = []

    def make(scenario: str, target: str, service: str, who: str, **options: object) -> Sipp:
        peer = Sipp(scenario, target, service, who, tmp_path, **options)  # type: ignore[arg-type]
        started.append(peer)
        return peer.start()

    yield make
    for peer in started:
        peer.kill()
