"""Write a ``docker save``-style image archive without Docker.

The archive holds ``manifest.json`` (config name, RepoTags, layer names), the
image config (``<sha256>.json``: User, Env, Entrypoint, WorkingDir and the
layers' diff IDs) and one ``<sha256>/layer.tar`` per layer; ``ctr images
import`` and ``docker load`` both accept it. Layers are uncompressed tars
made elsewhere (``layer_from_files``, mmdebstrap).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (OCI image spec, ``config``)."""

    entrypoint: Sequence[str]
    user: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    exposed_ports: Sequence[str] = ()


def layer_from_files(out: Path, files: Mapping[str, Path | bytes], mode: int = 0o755) -> Path:
    """An uncompressed layer tar of `files` (path in the image -> host file or bytes).

    Entries are root-owned with mtime 0, so the same input gives the same
    digest. Parent directories are added as needed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.strip("/").split("/")
            for depth in range(1, len(parts)):
                d = "/".join(parts[:depth])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            content = files[name]
            data = content if isinstance(content, bytes) else content.read_bytes()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return out


def _config_json(config: ImageConfig, diff_ids: Sequence[str]) -> bytes:
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": config.user,
            "Env": [f"{k}={v}" for k, v in config.env.items()],
            "Entrypoint": list(config.entrypoint),
            "WorkingDir": config.working_dir,
            "ExposedPorts": {port: {} for port in config.exposed_ports},
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [{"created_by": f"sipfleet layer {d[:12]}"} for d in diff_ids],
    }
    return json.dumps(image_config, sort_keys=True).encode()


def write_archive(out: Path, images: Mapping[str, ImageConfig], layers: Sequence[Path]) -> Path:
    """Write one archive holding every image of `images` (tag, e.g.
    ``sipfleet/node:0.1.0`` -> config), all on the same layer tars.

    Shared layers are stored once. Raises OSError if a layer cannot be read
    or `out` written.
    """
    diff_ids = [sha256_file(layer) for layer in layers]
    entries: list[tuple[str, bytes]] = []
    manifest = []
    for tag, config in images.items():
        config_bytes = _config_json(config, diff_ids)
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        entries.append((config_name, config_bytes))
        manifest.append(
            {
                "Config": config_name,
                "RepoTags": [tag],
                "Layers": [f"{d}/layer.tar" for d in diff_ids],
            }
        )
    entries.append(("manifest.json", json.dumps(manifest).encode()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for digest, layer in zip(diff_ids, layers, strict=True):
            tar.add(str(layer), arcname=f"{digest}/layer.tar", recursive=False)
    tmp.replace(out)
    return out
