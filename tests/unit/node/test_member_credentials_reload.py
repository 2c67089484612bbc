"""The credentials file is re-read when it changes; a broken file keeps the old store."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from sipfleet.node.auth.credentials import CredentialStore
from sipfleet.node.auth.digest import SHA256, ha1
from sipfleet.node.auth.reload import watch_credentials

REALM = "example.com"


def write(path: Path, users: dict[str, str]) -> None:
    """Replace the file atomically, as the kubelet swaps a Secret volume."""
    data = {REALM: {u: {SHA256: ha1(SHA256, u, REALM, p)} for u, p in users.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def test_reload_on_change_and_keep_the_old_store_on_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    write(path, {"alice": "a"})
    applied: list[CredentialStore] = []
    task = asyncio.create_task(watch_credentials(path, applied.append, interval=0.02))
    try:
        await asyncio.sleep(0.1)
        assert applied == []  # unchanged: nothing applied
        write(path, {"alice": "a", "bob": "b"})
        for _ in range(100):
            if applied:
                break
            await asyncio.sleep(0.02)
        assert applied[-1].ha1(REALM, "bob", SHA256) == ha1(SHA256, "bob", REALM, "b")
        path.write_text("{not: [valid")
        await asyncio.sleep(0.2)
        assert len(applied) == 1  # the broken file was not applied
    finally:
        task.cancel()
        await task
