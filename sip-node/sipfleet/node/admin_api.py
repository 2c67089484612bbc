"""The admin HTTP API (aiohttp). Handlers validate input and call a `Control`."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sipfleet.node.admin_types import (
    TRANSFER_REQUEST,
    TRANSFERS,
    Conflict,
    ErrorBody,
    GroupRef,
    NodeState,
    RoutesAck,
    ShardRequest,
    ShardState,
    Status,
    TransferRequest,
    TransferState,
    describe,
)
from sipfleet.node.auth.policy import AccessPolicy
from sipfleet.node.metrics import CONTENT_TYPE, NodeMetrics
from sipfleet.node.openapi import OPENAPI
from sipfleet.node.presentation import SenderDisplay
from sipfleet.node.routes import Groups, RoutesError, StaleGeneration, parse_routes

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


class Control(Protocol):
    """What the API needs from the server. LookupError -> 404, ValueError -> 400,
    Conflict or StaleGeneration -> 409."""

    metrics: NodeMetrics

    def ready(self) -> bool: ...
    def state(self) -> NodeState: ...
    def ensure_shard(
        self,
        group: str,
        capacity: int,
        access: AccessPolicy | None = None,
        sender_display: SenderDisplay | None = None,
    ) -> tuple[ShardState, bool]: ...
    async def delete_shard(self, group: str) -> ShardState: ...
    def put_routes(self, generation: int, groups: Groups) -> None: ...
    def start_transfer(self, request: TransferRequest) -> TransferState: ...
    def transfer(self, transfer_id: str) -> TransferState: ...
    def transfers(self) -> list[TransferState]: ...
    def drain(self) -> NodeState: ...


def _error(status: int, message: str) -> web.Response:
    return _json(ErrorBody(error=message), status)


def _json(body: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=body.model_dump_json(), status=status, content_type="application/json")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error(401, "missing or wrong bearer token")
        try:
            return await handler(request)
        except LookupError as exc:
            return _error(404, str(exc.args[0] if exc.args else exc))
        except (Conflict, StaleGeneration) as exc:
            return _error(409, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))

    return middleware


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ValueError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: dict[str, Any]) -> M:
    """The body as `model`; ValueError (HTTP 400) naming the bad fields."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None


def parse_transfer(body: dict[str, Any]) -> TransferRequest:
    """A POST /v1/transfers body; ValueError (HTTP 400) naming the bad fields."""
    try:
        return TRANSFER_REQUEST.validate_python(body)
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None


def build_app(control: Control, token: str) -> web.Application:
    """The aiohttp application; `token` is the bearer token for non-public paths."""
    routes = web.RouteTableDef()

    @routes.get("/healthz")
    async def healthz(_: web.Request) -> web.Response:
        return _json(Status(status="ok"))

    @routes.get("/readyz")
    async def readyz(_: web.Request) -> web.Response:
        if control.ready():
            return _json(Status(status="ready"))
        return _error(503, "SIP listeners are not up yet")

    @routes.get("/metrics")
    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=control.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    @routes.get("/openapi.json")
    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    @routes.get("/v1/state")
    async def state(_: web.Request) -> web.Response:
        return _json(control.state())

    @routes.post("/v1/shards")
    async def ensure_shard(request: web.Request) -> web.Response:
        body = _parse(ShardRequest, await _json_object(request))
        access = None if body.access is None else AccessPolicy.from_json(body.access.to_json())
        shard, created = control.ensure_shard(
            body.group, body.capacity, access, body.sender_display
        )
        return _json(shard, 201 if created else 200)

    @routes.delete("/v1/shards")
    async def delete_shard(request: web.Request) -> web.Response:
        body = _parse(GroupRef, await _json_object(request))
        return _json(await control.delete_shard(body.group))

    @routes.get("/v1/routes")
    async def get_routes(_: web.Request) -> web.Response:
        return _json(control.state().routes)

    @routes.put("/v1/routes")
    async def put_routes(request: web.Request) -> web.Response:
        try:
            generation, groups = parse_routes(await _json_object(request))
        except RoutesError as exc:
            raise ValueError(str(exc)) from None
        control.put_routes(generation, groups)
        return _json(RoutesAck(generation=generation))

    @routes.post("/v1/transfers")
    async def start_transfer(request: web.Request) -> web.Response:
        body = await _json_object(request)
        return _json(control.start_transfer(parse_transfer(body)), 202)

    @routes.get("/v1/transfers")
    async def list_transfers(_: web.Request) -> web.Response:
        return web.Response(
            body=TRANSFERS.dump_json(control.transfers()), content_type="application/json"
        )

    @routes.get("/v1/transfers/{id}")
    async def get_transfer(request: web.Request) -> web.Response:
        return _json(control.transfer(request.match_info["id"]))

    @routes.post("/v1/drain")
    async def drain(request: web.Request) -> web.Response:
        if request.can_read_body:
            await _json_object(request)
        return _json(control.drain())

    app = web.Application(middlewares=[_auth_middleware(token)], client_max_size=1 << 20)
    app.add_routes(routes)
    return app
