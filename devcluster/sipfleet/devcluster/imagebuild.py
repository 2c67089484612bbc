"""The node and operator images without Docker, from images/Dockerfile's recipe.

Two layers, each cached by content under ``<cache>/images/``:

- base (rarely rebuilt; key: this recipe's version + the project's runtime
  dependencies): ``mmdebstrap --variant=minbase`` Debian bookworm with
  python3, a virtualenv ``/opt/sipfleet`` holding the runtime dependencies
  (pip removed afterwards), and user/group ``sipfleet`` 10001;
- app (key: the sources): the project's ``sipfleet`` packages in that
  virtualenv's site-packages and the console scripts ``sipfleet-node`` and
  ``sipfleet-operator``.

Both images share the layers and differ only in their config (entrypoint,
ports), as the Dockerfile's ``node`` and ``operator`` stages share
``runtime``. Keep them in step: a change to the Dockerfile's runtime (user,
env, workdir, entrypoints, dependencies) goes into `IMAGES`/`_base_layer`
here, and tests/unit/devcluster/test_imagebuild.py checks that both agree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sipfleet.devcluster import ociarchive
from sipfleet.devcluster.binaries import cache_root

RECIPE = "bookworm-minbase-python3-venv-v1"
"""Bump to rebuild the base layer when `_base_layer` changes."""
VENV = "/opt/sipfleet"
UID = 10001
SOURCE_DIRS = ("sip-node/sipfleet", "operator/sipfleet", "devcluster/sipfleet", "demo/sipfleet")
RUNTIME_ENV = {
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}


class ImageBuildError(RuntimeError):
    """A build step failed; the message says which and how to see why."""


@dataclass(frozen=True)
class ImageSpec:
    """One image: its tag, entrypoint and exposed ports (the Dockerfile stage)."""

    tag: str
    entrypoint: str
    ports: tuple[str, ...]


IMAGES = (
    ImageSpec("sipfleet/node:0.1.0", "sipfleet-node", ("5060/udp", "5060/tcp", "8080/tcp")),
    ImageSpec("sipfleet/operator:0.1.0", "sipfleet-operator", ("8081/tcp", "9090/tcp")),
)


def _pyproject(repo: Path) -> dict[str, object]:
    with (repo / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def dependencies(repo: Path) -> list[str]:
    """The project's runtime requirements (pyproject ``[project] dependencies``)."""
    project = _pyproject(repo)["project"]
    assert isinstance(project, dict)
    return sorted(str(d) for d in project["dependencies"])


def base_key(repo: Path) -> str:
    digest = hashlib.sha256("\n".join([RECIPE, *dependencies(repo)]).encode())
    return digest.hexdigest()[:16]


def _base_layer(repo: Path, out: Path, log: Path) -> Path:
    """Build the base layer tar with mmdebstrap (about 2-4 min; needs root, apt, PyPI)."""
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is not installed; run scripts/install-system-deps.sh")
    ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    reqs = " ".join(f"'{d}'" for d in dependencies(repo))
    # PyPI may be reached through a TLS-inspecting proxy: the host's CA bundle
    # is copied in for the install and removed after.
    hooks = [
        f'cp {ca} "$1/tmp/build-ca.crt"',
        f'chroot "$1" python3 -m venv {VENV}',
        # A clean environment: the host's CA variables name files the chroot lacks.
        f'chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 '
        "PIP_CERT=/tmp/build-ca.crt REQUESTS_CA_BUNDLE=/tmp/build-ca.crt "
        "SSL_CERT_FILE=/tmp/build-ca.crt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "
        f"{VENV}/bin/pip install -q {reqs}",
        f'chroot "$1" {VENV}/bin/pip uninstall -q --yes pip setuptools',
        'rm -f "$1/tmp/build-ca.crt"',
        f'chroot "$1" groupadd --system --gid {UID} sipfleet',
        f'chroot "$1" useradd --system --uid {UID} --gid {UID} --no-create-home '
        "--shell /usr/sbin/nologin sipfleet",
        'rm -rf "$1/var/lib/apt/lists"/* "$1/var/cache/apt"/* "$1/var/log"/*',
    ]
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        "--include=python3,python3-venv",
        *(f"--customize-hook={h}" for h in hooks),
        "bookworm",
        str(out),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        result = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0 or not out.is_file():
        raise ImageBuildError(f"mmdebstrap failed (exit {result.returncode}); see {log}")
    return out


def _site_packages(base: Path) -> str:
    """``opt/sipfleet/lib/python3.X/site-packages`` as found in the base layer."""
    with tarfile.open(base) as tar:
        for name in tar.getnames():
            parts = name.lstrip("./").split("/")
            if parts[:3] == ["opt", "sipfleet", "lib"] and parts[4:5] == ["site-packages"]:
                return "/".join(parts[:5])
    raise ImageBuildError(f"{base} has no {VENV}/lib/python3.*/site-packages")


def app_files(repo: Path, site_packages: str) -> dict[str, Path | bytes]:
    """Image path -> content of the app layer: the packages and console scripts."""
    files: dict[str, Path | bytes] = {}
    for source in SOURCE_DIRS:
        root = repo / source
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"{site_packages}/sipfleet/{path.relative_to(root)}"] = path
    project = _pyproject(repo)["project"]
    assert isinstance(project, dict)
    for name, target in project["scripts"].items():
        module, func = str(target).split(":")
        files[f"{VENV.lstrip('/')}/bin/{name}"] = (
            f"#!{VENV}/bin/python3\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"
        ).encode()
    return files


def app_key(files: dict[str, Path | bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        digest.update(name.encode() + b"\0")
        digest.update(content if isinstance(content, bytes) else content.read_bytes())
    return digest.hexdigest()[:16]


STALE_S = 3600.0
"""App archives (one per source state, ~600 MB each) unused this long are removed."""


def _prune(cache: Path, keep: Path) -> None:
    """Remove app layer dirs other than `keep` not touched for `STALE_S` seconds
    (another checkout sharing the cache may be importing a recent one)."""
    now = time.time()
    for old in cache.glob("app-*"):
        if old != keep and now - old.stat().st_mtime > STALE_S:
            shutil.rmtree(old, ignore_errors=True)


def build(repo: Path, out: Callable[[str], None] = print) -> tuple[Path, list[str]]:
    """Build (or take from the cache) both images in one archive; return it and the tags.

    Raises ImageBuildError if a layer cannot be built.
    """
    cache = cache_root() / "images"
    base = cache / f"base-{base_key(repo)}" / "layer.tar"
    if not base.is_file():
        out(f"building the base layer {base.parent.name} with mmdebstrap (minutes, once)")
        _base_layer(repo, base, base.parent / "mmdebstrap.log")
    files = app_files(repo, _site_packages(base))
    app_dir = cache / f"app-{app_key(files)}"
    app = app_dir / "layer.tar"
    if not app.is_file():
        ociarchive.layer_from_files(app, files, mode=0o755)
    archive = app_dir / "images.tar"
    _prune(cache, keep=app_dir)
    if archive.is_file():
        os.utime(app_dir)  # in use: not stale for `_prune`
    else:
        configs = {
            spec.tag: ociarchive.ImageConfig(
                entrypoint=[f"{VENV}/bin/{spec.entrypoint}"],
                user=f"{UID}:{UID}",
                env=RUNTIME_ENV,
                working_dir="/tmp",
                exposed_ports=spec.ports,
            )
            for spec in IMAGES
        }
        ociarchive.write_archive(archive, configs, [base, app])
    return archive, [spec.tag for spec in IMAGES]
