"""Re-read the credentials file when it changes (a Secret update, without a restart).

Kubernetes updates a mounted Secret by swapping a symlink, so the file's
stat() (followed through the link) changes; the file is polled every
`interval` seconds. A file that no longer parses is logged and the previous
credentials stay in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from sipfleet.node.filewatch import signature

from .credentials import CredentialsError, CredentialStore

log = logging.getLogger(__name__)

RELOAD_SECONDS = 2.0
"""How often the credentials file is looked at."""


async def watch_credentials(
    path: Path,
    apply: Callable[[CredentialStore], None],
    interval: float = RELOAD_SECONDS,
) -> None:
    """Run until cancelled: call `apply` with the new store each time `path` changes."""
    seen = signature(path)
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(interval)
            now = signature(path)
            if now == seen or now is None:
                continue
            seen = now
            try:
                store = await asyncio.to_thread(CredentialStore.load, path)
            except (OSError, CredentialsError) as exc:
                log.warning("credentials file %s not reloaded, keeping the old one: %s", path, exc)
                continue
            apply(store)
            log.info("credentials file %s reloaded (%d realms)", path, len(store.entries))
