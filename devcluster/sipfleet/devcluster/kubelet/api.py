"""A small async Kubernetes API client on aiohttp with a client certificate.

The kubelet needs only a handful of verbs plus list+watch; this keeps it on
one event loop without the synchronous `kubernetes` client.
"""

from __future__ import annotations

import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from sipfleet.devcluster.kubeconfig import ClientConfig

JSON = dict[str, Any]


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


# Errors worth a retry: the API answered badly or could not be reached.
TRANSIENT_ERRORS = (ApiError, aiohttp.ClientError, OSError, TimeoutError)


def _ssl_context(cfg: ClientConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=cfg.ca_pem.decode())
    # load_cert_chain reads files only; keep them for the duration of the call.
    with tempfile.TemporaryDirectory(prefix="sipfleet-kubelet-") as tmp:
        cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
        cert.write_bytes(cfg.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(cfg.key_pem)
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Api:
    def __init__(self, cfg: ClientConfig) -> None:
        self.server = cfg.server.rstrip("/")
        self.ca_pem = cfg.ca_pem
        self._ssl = _ssl_context(cfg)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=20),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            read_bufsize=4 * 1024 * 1024,  # one watch event per line
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with Api(...)`"
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 15.0,
    ) -> JSON:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(
            method,
            self.server + path,
            data=data,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise ApiError(resp.status, message)
            return json.loads(text) if text else {}

    async def get(self, path: str) -> JSON:
        return await self.request("GET", path)

    async def post(self, path: str, body: JSON) -> JSON:
        return await self.request("POST", path, body=body)

    async def put(self, path: str, body: JSON) -> JSON:
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        return await self.request(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )

    async def delete(self, path: str, body: JSON | None = None) -> JSON:
        return await self.request("DELETE", path, body=body)

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[JSON]:
        """Yield watch events from `resource_version` until the server ends the stream."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "240",
        }
        async with self.session.get(
            self.server + path,
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
        ) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text())
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)
