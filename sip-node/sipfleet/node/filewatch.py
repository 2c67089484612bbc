"""Telling whether a mounted file changed, for files reloaded by polling (the TLS
certificate and key, the member credentials): Kubernetes updates a Secret volume
by swapping a symlink, so a changed inode, mtime or size is a new version."""

from __future__ import annotations

from pathlib import Path

Signature = tuple[int, int, int]
"""(inode, mtime in ns, size in bytes) of a file."""


def signature(path: Path) -> Signature | None:
    """The file's `Signature` (following symlinks), None while it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
