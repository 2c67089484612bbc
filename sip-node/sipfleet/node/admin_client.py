"""Async client for the sipfleet-node admin API."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp


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

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/v1/state")
        return result

    async def metrics(self) -> str:
        return str(await self._request("GET", "/metrics"))

    async def ensure_shard(
        self, group: str, capacity: int, access: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create the group's shard (idempotent); `access` is its policy, e.g.
        {"policy": "authenticated", "algorithms": ["SHA-256"]} (docs/security.md)."""
        body: dict[str, Any] = {"group": group, "capacity": capacity}
        if access is not None:
            body["access"] = access
        result: dict[str, Any] = await self._request("POST", "/v1/shards", body)
        return result

    async def delete_shard(self, group: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("DELETE", "/v1/shards", {"group": group})
        return result

    async def routes(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/v1/routes")
        return result

    async def put_routes(
        self, generation: int, groups: dict[str, list[dict[str, Any]]]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "PUT", "/v1/routes", {"generation": generation, "groups": groups}
        )
        return result

    async def start_transfer(
        self,
        group: str,
        target: str,
        *,
        count: int | None = None,
        members: list[str] | None = None,
        method: str = "refer",
        rate: float = 50.0,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"group": group, "target": target, "method": method, "rate": rate}
        if count is not None:
            body["count"] = count
        if members is not None:
            body["members"] = members
        result: dict[str, Any] = await self._request("POST", "/v1/transfers", body)
        return result

    async def transfer(self, transfer_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/v1/transfers/{transfer_id}")
        return result

    async def transfers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request("GET", "/v1/transfers")
        return result

    async def drain(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", "/v1/drain", {})
        return result
