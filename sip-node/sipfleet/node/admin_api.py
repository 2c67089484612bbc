"""The admin HTTP API (aiohttp). Handlers validate input and call a `Control`."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from sipfleet.node.auth.policy import AccessPolicy
from sipfleet.node.metrics import CONTENT_TYPE, NodeMetrics
from sipfleet.node.openapi import OPENAPI
from sipfleet.node.routes import Groups, RoutesError, StaleGeneration, parse_routes

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
METHODS = ("refer", "refer-to-server")


class Conflict(Exception):
    """The request clashes with the server's state (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class TransferRequest:
    group: str
    target: str
    method: str
    rate: float
    count: int | None = None
    members: tuple[str, ...] | None = None


class Control(Protocol):
    """What the API needs from the server. LookupError -> 404, ValueError -> 400,
    Conflict or StaleGeneration -> 409."""

    metrics: NodeMetrics

    def ready(self) -> bool: ...
    def state(self) -> dict[str, Any]: ...
    def ensure_shard(
        self, group: str, capacity: int, access: AccessPolicy | None = None
    ) -> tuple[dict[str, Any], bool]: ...
    async def delete_shard(self, group: str) -> dict[str, Any]: ...
    def put_routes(self, generation: int, groups: Groups) -> None: ...
    def start_transfer(self, request: TransferRequest) -> dict[str, Any]: ...
    def transfer(self, transfer_id: str) -> dict[str, Any]: ...
    def transfers(self) -> list[dict[str, Any]]: ...
    def drain(self) -> dict[str, Any]: ...


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


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


def _group(body: dict[str, Any]) -> str:
    group = body.get("group")
    if not isinstance(group, str) or not group.startswith("sip:") or "@" not in group:
        raise ValueError("group must be a SIP URI like sip:conf3@example.com")
    return group


def _positive_int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer")
    return value


def parse_transfer(body: dict[str, Any]) -> TransferRequest:
    group = _group(body)
    target = body.get("target")
    if not isinstance(target, str) or not target.startswith("sip:"):
        raise ValueError("target must be the shard URI to move members to (sip:...)")
    method = body.get("method", "refer")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    rate = body.get("rate", 50.0)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate <= 10000:
        raise ValueError("rate must be a number of transfers per second in (0, 10000]")
    count, members = body.get("count"), body.get("members")
    if (count is None) == (members is None):
        raise ValueError("give exactly one of count (int) or members (list of member URIs)")
    if members is not None:
        if (
            not isinstance(members, list)
            or not members
            or not all(isinstance(m, str) for m in members)
        ):
            raise ValueError("members must be a non-empty list of member URIs")
        return TransferRequest(group, target, method, float(rate), members=tuple(members))
    return TransferRequest(group, target, method, float(rate), count=_positive_int(body, "count"))


def build_app(control: Control, token: str) -> web.Application:
    """The aiohttp application; `token` is the bearer token for non-public paths."""
    routes = web.RouteTableDef()

    @routes.get("/healthz")
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    @routes.get("/readyz")
    async def readyz(_: web.Request) -> web.Response:
        if control.ready():
            return web.json_response({"status": "ready"})
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
        return web.json_response(control.state())

    @routes.post("/v1/shards")
    async def ensure_shard(request: web.Request) -> web.Response:
        body = await _json_object(request)
        access = AccessPolicy.from_json(body["access"]) if "access" in body else None
        shard, created = control.ensure_shard(_group(body), _positive_int(body, "capacity"), access)
        return web.json_response(shard, status=201 if created else 200)

    @routes.delete("/v1/shards")
    async def delete_shard(request: web.Request) -> web.Response:
        body = await _json_object(request)
        return web.json_response(await control.delete_shard(_group(body)))

    @routes.get("/v1/routes")
    async def get_routes(_: web.Request) -> web.Response:
        return web.json_response(control.state()["routes"])

    @routes.put("/v1/routes")
    async def put_routes(request: web.Request) -> web.Response:
        try:
            generation, groups = parse_routes(await _json_object(request))
        except RoutesError as exc:
            raise ValueError(str(exc)) from None
        control.put_routes(generation, groups)
        return web.json_response({"generation": generation})

    @routes.post("/v1/transfers")
    async def start_transfer(request: web.Request) -> web.Response:
        body = await _json_object(request)
        return web.json_response(control.start_transfer(parse_transfer(body)), status=202)

    @routes.get("/v1/transfers")
    async def list_transfers(_: web.Request) -> web.Response:
        return web.json_response(control.transfers())

    @routes.get("/v1/transfers/{id}")
    async def get_transfer(request: web.Request) -> web.Response:
        return web.json_response(control.transfer(request.match_info["id"]))

    @routes.post("/v1/drain")
    async def drain(request: web.Request) -> web.Response:
        if request.can_read_body:
            await _json_object(request)
        return web.json_response(control.drain())

    app = web.Application(middlewares=[_auth_middleware(token)], client_max_size=1 << 20)
    app.add_routes(routes)
    return app
