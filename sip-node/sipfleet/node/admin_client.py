"""Async client for the sipfleet-node admin API; answers come back as the contract's
types (admin_types.py), validated, so callers never re-parse JSON. A malformed
answer raises pydantic.ValidationError."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
from pydantic import BaseModel
from sipfleet.node.admin_types import (
    TRANSFER_REQUEST,
    TRANSFERS,
    Access,
    GroupRef,
    NodeState,
    RouteEntry,
    Routes,
    RoutesAck,
    ShardRequest,
    ShardState,
    TransferRequest,
    TransferState,
)
from sipfleet.node.presentation import SenderDisplay


class AdminError(Exception):
    """A non-2xx answer (status 0: the server could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class AdminClient:
    """`AdminClient("http://127.0.0.10:8080", token)`; use as `async with` or call close()."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            if isinstance(body, BaseModel):
                body = body.model_dump(mode="json")
            async with self._session.request(
                method,
                self.base_url + path,
                json=body,
                headers=self._headers,
            ) as response:
                text = await response.text()
                data: Any = None
                if text and response.content_type == "application/json":
                    data = await response.json()
                if response.status >= 300:
                    message = data.get("error", text) if isinstance(data, dict) else text
                    raise AdminError(response.status, message)
                return data if data is not None else text
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AdminError(0, f"{method} {self.base_url}{path}: {exc!r}") from exc

    async def health(self) -> bool:
        try:
            await self._request("GET", "/healthz")
        except AdminError:
            return False
        return True

    async def ready(self) -> bool:
        try:
            await self._request("GET", "/readyz")
        except AdminError:
            return False
        return True

    async def state(self) -> NodeState:
        return NodeState.model_validate(await self._request("GET", "/v1/state"))

    async def metrics(self) -> str:
        return str(await self._request("GET", "/metrics"))

    async def ensure_shard(
        self,
        group: str,
        capacity: int,
        access: Access | None = None,
        sender_display: SenderDisplay | None = None,
    ) -> ShardState:
        """Create the group's shard (idempotent); `access` is its policy
        (docs/security.md), `sender_display` how its members see who wrote a group
        message (docs/media-and-messages.md); None leaves the server's default."""
        body = ShardRequest(
            group=group, capacity=capacity, access=access, sender_display=sender_display
        )
        return ShardState.model_validate(await self._request("POST", "/v1/shards", body))

    async def delete_shard(self, group: str) -> ShardState:
        answer = await self._request("DELETE", "/v1/shards", GroupRef(group=group))
        return ShardState.model_validate(answer)

    async def routes(self) -> Routes:
        return Routes.model_validate(await self._request("GET", "/v1/routes"))

    async def put_routes(
        self, generation: int, groups: Mapping[str, Sequence[RouteEntry]]
    ) -> RoutesAck:
        body = Routes(generation=generation, groups={g: tuple(es) for g, es in groups.items()})
        return RoutesAck.model_validate(await self._request("PUT", "/v1/routes", body))

    async def start_transfer(self, request: TransferRequest) -> TransferState:
        body = TRANSFER_REQUEST.dump_python(request, mode="json", exclude_none=True)
        return TransferState.model_validate(await self._request("POST", "/v1/transfers", body))

    async def transfer(self, transfer_id: str) -> TransferState:
        answer = await self._request("GET", f"/v1/transfers/{transfer_id}")
        return TransferState.model_validate(answer)

    async def transfers(self) -> list[TransferState]:
        return TRANSFERS.validate_python(await self._request("GET", "/v1/transfers"))

    async def drain(self) -> NodeState:
        return NodeState.model_validate(await self._request("POST", "/v1/drain", {}))
