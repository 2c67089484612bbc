"""The admin API's contract: every request and response body, as pydantic types.

One definition serves the server (admin_api.py validates requests and writes
responses with these), the served OpenAPI document (openapi.py generates its
schemas from them), the client (admin_client.py returns them) and so the
operator, the demo and the benchmarks. `RouteEntry` is also the routing
table's entry inside the server (routes.py) and the operator (routing.py).

Types constructed positionally by the group logic (RouteEntry, TransferRequest)
are pydantic dataclasses; the rest are frozen models. Validation errors are
pydantic.ValidationError (a ValueError: HTTP 400).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from sipfleet.node.auth.policy import AOR_PATTERN, Algorithm, Mode, check_algorithms
from sipfleet.node.presentation import SenderDisplay

METHODS = ("refer", "refer-to-server")
TransferMethod = Literal["refer", "refer-to-server"]
RouteState = Literal["active", "draining"]
GroupUri = Annotated[
    StrictStr,
    Field(pattern=r"^sip:[^@]+@.+", examples=["sip:conf3@example.com"], description="group URI"),
]
SipUriText = Annotated[StrictStr, Field(pattern=r"^sip:", description="a SIP URI")]


class Conflict(Exception):
    """The request clashes with the server's state (HTTP 409)."""


_CONFIG = ConfigDict(frozen=True, extra="ignore")
_DATACLASS = ConfigDict(extra="ignore")  # frozen comes from the decorator


@dataclass(frozen=True, config=_DATACLASS)
class RouteEntry:
    """One server's place in a group's ordered list: entry 0 is the tree root (the
    main server); `free` is the room it had when the operator looked (negative
    values count as 0)."""

    server: Annotated[StrictStr, Field(min_length=1)]
    uri: SipUriText
    state: RouteState = "active"
    free: StrictInt = 0

    @field_validator("free")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        return max(value, 0)

    def to_json(self) -> dict[str, Any]:
        return ROUTE_ENTRY.dump_python(self, mode="json")  # type: ignore[no-any-return]


ROUTE_ENTRY: TypeAdapter[RouteEntry] = TypeAdapter(RouteEntry)


class Routes(BaseModel):
    """PUT /v1/routes body and GET /v1/routes answer: group URI -> ordered entries
    (children of entry i are entries k*i+1..k*i+k, k = the tree fanout)."""

    model_config = _CONFIG

    generation: Annotated[StrictInt, Field(ge=0)]
    groups: dict[SipUriText, Annotated[tuple[RouteEntry, ...], Field(min_length=1)]]

    @field_validator("groups")
    @classmethod
    def _servers_once(
        cls, groups: dict[str, tuple[RouteEntry, ...]]
    ) -> dict[str, tuple[RouteEntry, ...]]:
        for group, entries in groups.items():
            names = [e.server for e in entries]
            if len(set(names)) != len(names):
                raise ValueError(f"groups[{group!r}] lists a server twice")
        return groups


class RoutesAck(BaseModel):
    model_config = _CONFIG
    generation: int


Aor = Annotated[StrictStr, Field(pattern=AOR_PATTERN, description="sip:user@domain")]


class Access(BaseModel):
    """Who may join the group, post to it and read its roster (docs/security.md,
    SipConference.spec.access): open, authenticated, or allowlist of AORs; the digest
    algorithms members may answer with, SHA-256 first (RFC 8760)."""

    model_config = _CONFIG
    policy: Mode = "authenticated"
    allow: tuple[Aor, ...] = ()
    algorithms: Annotated[tuple[Algorithm, ...], Field(min_length=1)] = ("SHA-256",)

    @field_validator("algorithms")
    @classmethod
    def _sha256_first(cls, algorithms: tuple[str, ...]) -> tuple[str, ...]:
        check_algorithms(algorithms)
        return algorithms

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ShardRequest(BaseModel):
    """POST /v1/shards: create the group's shard here (idempotent; a new capacity
    replaces the old one; `access`, when given, becomes the group's policy here,
    else the server's --default-policy applies; `sender_display`, when given, is how
    the group's members are shown who wrote a group message, else the server's
    --sender-display applies: docs/media-and-messages.md)."""

    model_config = _CONFIG
    group: GroupUri
    capacity: Annotated[StrictInt, Field(ge=1)]
    access: Access | None = None
    sender_display: SenderDisplay | None = None


class GroupRef(BaseModel):
    """DELETE /v1/shards."""

    model_config = _CONFIG
    group: GroupUri


class ShardState(BaseModel):
    """One shard on this server."""

    model_config = _CONFIG
    group: str
    uri: str = Field(description="shard URI: sip:<group user>-<server>@host:port")
    members: int
    capacity: int
    draining: bool
    member_uris: tuple[str, ...] = ()
    sender_display: SenderDisplay | None = Field(
        default=None,
        description="how the shard's members are shown who wrote a group message: the "
        "group's own sender display, else the server's --sender-display (null only from "
        "servers that predate it)",
    )
    access: Access | None = Field(
        default=None,
        description="the group's access policy in force on this server (None: not reported)",
    )
    dropped: int = Field(
        default=0,
        description="members whose session this server ended without their asking and "
        "without moving them (a delivery timed out, the dialog was gone, the 2xx was "
        "never ACKed), since the shard was created",
    )
    lost: int = Field(
        default=0,
        description="members the server's previous process had in this group that nobody "
        "brought back after it crashed (it and the holder of their replicas died together, "
        "or the group had no holder), counted once by the restarted server",
    )


class AdvertisedAddress(BaseModel):
    """Where members reach the server when it is not where it listens (NAT, a Service,
    a host port): written into Via, Contact, Refer-To and SDP (docs/install.md)."""

    model_config = _CONFIG
    host: str
    udp_port: int
    tcp_port: int


class SipAddress(BaseModel):
    model_config = _CONFIG
    host: str
    port: int
    advertised: AdvertisedAddress | None = None


class NodeState(BaseModel):
    """GET /v1/state (and the answer to POST /v1/drain)."""

    model_config = _CONFIG
    name: str
    instance: str = Field(
        default="",
        description="this server process's instance ID, new each time the process starts "
        "(a restarted container is a new instance); empty from servers that predate it",
    )
    role: Literal["main", "node"]
    domain: str
    sip: SipAddress
    draining: bool
    routes_generation: int
    shards: tuple[ShardState, ...]
    routes: Routes


@dataclass(frozen=True, config=_DATACLASS)
class TransferRequest:
    """POST /v1/transfers: move members of `group` to the shard `target` with
    `method` at `rate` members per second: `count` of them, or exactly `members`
    (AORs). Exactly one of count and members."""

    group: GroupUri
    target: SipUriText
    method: TransferMethod = "refer"
    rate: Annotated[StrictFloat, Field(gt=0, le=10_000, description="members per second")] = 50.0
    count: Annotated[StrictInt, Field(ge=1)] | None = None
    members: Annotated[tuple[StrictStr, ...], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _count_or_members(self) -> TransferRequest:
        if (self.count is None) == (self.members is None):
            raise ValueError("give exactly one of count (int) or members (list of member URIs)")
        return self


TRANSFER_REQUEST: TypeAdapter[TransferRequest] = TypeAdapter(TransferRequest)


class TransferState(BaseModel):
    """One transfer's progress."""

    model_config = _CONFIG
    id: str
    group: str
    target: str
    method: TransferMethod
    rate: float
    requested: int
    moved: int
    failed: int
    state: Literal["running", "done", "failed"]
    pending: int


TRANSFERS: TypeAdapter[list[TransferState]] = TypeAdapter(list[TransferState])


class Status(BaseModel):
    """GET /healthz, /readyz."""

    model_config = _CONFIG
    status: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    model_config = _CONFIG
    error: str


def describe(error: ValidationError) -> str:
    """A ValidationError as one line naming each bad field."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


__all__ = [
    "METHODS",
    "ROUTE_ENTRY",
    "TRANSFERS",
    "TRANSFER_REQUEST",
    "AdvertisedAddress",
    "Conflict",
    "ErrorBody",
    "GroupRef",
    "NodeState",
    "RouteEntry",
    "RouteState",
    "Routes",
    "RoutesAck",
    "ShardRequest",
    "ShardState",
    "SipAddress",
    "Status",
    "TransferMethod",
    "TransferRequest",
    "TransferState",
    "describe",
]
