"""How a container becomes a local command (the local kubelet has no images).

- If the container sets ``command``, that is run: ``command + args``.
- Otherwise the image names a console script of this distribution:

  =========================  =====================
  image                      command
  =========================  =====================
  ``sipfleet/node[:tag]``    ``sipfleet-node``
  ``sipfleet/operator[:tag]``  ``sipfleet-operator``
  =========================  =====================

  with ``args`` appended. A registry prefix (``ghcr.io/x/sipfleet/node``)
  and a digest are ignored.
- Any other image without ``command`` is an error reported in the container
  status (reason ``UnsupportedImage``).

The executable is looked up on a PATH that puts the virtualenv's ``bin``
first, so ``python``, ``sipfleet-node`` etc. are this project's.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

IMAGE_COMMANDS = {
    "sipfleet/node": "sipfleet-node",
    "sipfleet/operator": "sipfleet-operator",
}


class UnsupportedImage(ValueError):
    pass


def repository(image: str) -> str:
    """`registry/repo:tag@digest` -> `registry/repo`."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    return name


def image_command(image: str) -> str | None:
    repo = repository(image)
    for key, command in IMAGE_COMMANDS.items():
        if repo == key or repo.endswith("/" + key):
            return command
    return None


def search_path(inherited: str) -> str:
    """PATH for pods: the venv's bin dir first, then the kubelet's own PATH."""
    venv_bin = str(Path(sys.executable).parent)
    parts = [venv_bin, *[p for p in inherited.split(":") if p and p != venv_bin]]
    return ":".join(parts)


def container_argv(container: dict[str, Any], path: str) -> list[str]:
    """The argv for `container` (before $(VAR) expansion and path rewriting)."""
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        image = container.get("image", "")
        mapped = image_command(image)
        if mapped is None:
            known = ", ".join(IMAGE_COMMANDS)
            raise UnsupportedImage(
                f"image {image!r} has no local command; set `command` or use one of: {known}"
            )
        command = [mapped]
    return command + args


def resolve_executable(argv0: str, path: str) -> str:
    """An absolute path for argv[0] (looked up on `path` if it has no slash)."""
    if "/" in argv0:
        return argv0
    found = shutil.which(argv0, path=path)
    if found is None:
        raise UnsupportedImage(f"executable {argv0!r} not found on PATH {path}")
    return found
