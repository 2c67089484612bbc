"""A tiny blocking HTTPS client for the CLI: health checks and a few API calls."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class HTTPClient:
    """HTTPS with our CA and, if given, a client certificate."""

    def __init__(self, ca: Path, cert: Path | None = None, key: Path | None = None) -> None:
        self._ctx = ssl.create_default_context(cafile=str(ca))
        if cert is not None and key is not None:
            self._ctx.load_cert_chain(str(cert), str(key))

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 5.0,
    ) -> Response:
        """Send one request; connection failures come back as status 0."""
        req = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=timeout) as resp:
                return Response(resp.status, resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, err.read())
        except (urllib.error.URLError, OSError):
            return Response(0, b"")


def plain_get(url: str, timeout: float = 2.0) -> Response:
    """GET over plain HTTP (etcd's client port on loopback)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return Response(resp.status, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, err.read())
    except (urllib.error.URLError, OSError):
        return Response(0, b"")
