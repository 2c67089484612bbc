"""Types shared by the admin API and the group logic it drives (no HTTP here)."""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("refer", "refer-to-server")


class Conflict(Exception):
    """The request clashes with the server's state (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """Move members of `group` to the shard `target` (a SIP URI) with `method`
    (one of METHODS) at `rate` members per second: `count` of them, or exactly
    the `members` (AORs)."""

    group: str
    target: str
    method: str
    rate: float
    count: int | None = None
    members: tuple[str, ...] | None = None
