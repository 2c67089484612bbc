"""The kubelet's HTTPS endpoint, so `kubectl logs` works.

The API server proxies ``kubectl logs`` to the node's kubeletEndpoint; only
``/containerLogs`` and ``/healthz`` are served. Clients must present a
certificate from the cluster CA with the API server's kubelet-client name.
Each container's log file holds all of its runs, so ``--previous`` shows the
same file.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from sipfleet.devcluster.pki import APISERVER_KUBELET_CLIENT

FOLLOW_POLL = 0.2


def tail_lines(data: bytes, count: int) -> bytes:
    """The last `count` lines of `data` (a trailing newline does not count as a line)."""
    if count <= 0:
        return b""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-count:])


def server_ssl(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_name(request: web.Request) -> str:
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    for rdn in (peer or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


# Where a container's log is and whether it may still grow: (path, running) or None.
LogLocator = Callable[[str, str, str], tuple[Path, Callable[[], bool]] | None]


def make_app(locate: LogLocator) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def container_logs(request: web.Request) -> web.StreamResponse:
        if _client_name(request) != APISERVER_KUBELET_CLIENT:
            raise web.HTTPForbidden(text="only the API server may read logs\n")
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        found = locate(ns, pod, container)
        if found is None:
            raise web.HTTPNotFound(text=f"no container {container!r} in pod {ns}/{pod}\n")
        path, running = found
        data = path.read_bytes() if path.exists() else b""
        if "tailLines" in request.query:
            data = tail_lines(data, int(request.query["tailLines"]))
        if "limitBytes" in request.query:
            data = data[: int(request.query["limitBytes"])]
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        if request.query.get("follow") in ("true", "1"):
            offset = path.stat().st_size if path.exists() else 0
            while True:
                size = path.stat().st_size if path.exists() else 0
                if size > offset:
                    with path.open("rb") as f:
                        f.seek(offset)
                        chunk = f.read(size - offset)
                    offset = size
                    await response.write(chunk)
                elif not running():
                    break
                else:
                    await asyncio.sleep(FOLLOW_POLL)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    return app


async def serve(
    locate: LogLocator, port: int, ssl_context: ssl.SSLContext, host: str = "127.0.0.1"
) -> web.AppRunner:
    runner = web.AppRunner(make_app(locate), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
