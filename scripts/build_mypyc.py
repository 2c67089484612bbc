"""Compile sip-node's SIP core (sipfleet/node/sip) with mypyc, outside the repository.

    .venv/bin/python scripts/build_mypyc.py [--force]

The build goes to ~/.cache/sipfleet/mypyc/<key>/ ($SIPFLEET_CACHE overrides the
root), keyed by the sources and the interpreter (`sipfleet.node.sip.compiled`),
and is used from then on by every process importing the package with these
sources. Nothing is written into the repository, so an edited source is never
shadowed by a stale compiled copy. Without a C compiler, the Python headers or
mypyc this prints why and exits 0: the pure Python core runs (slower, same
behaviour). A build takes about a minute; an existing one is reused at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from sipfleet.node.sip import compiled


def missing_tools() -> str | None:
    """Why mypyc cannot build here (None when it can)."""
    if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        return "no C compiler (cc or gcc)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"no Python headers ({include}/Python.h; Debian: python3-dev)"
    if shutil.which("mypyc", path=str(Path(sys.executable).parent)) is None:
        return "no mypyc next to this interpreter (pip install mypy)"
    return None


def build(target: Path) -> None:
    """Compile the modules into `target` (modules/ and lib/, then the `complete`
    marker); raises CalledProcessError with mypyc's output on failure."""
    with tempfile.TemporaryDirectory(prefix="sipfleet-mypyc-") as tmp:
        work = Path(tmp)
        package = work / "sipfleet" / "node" / "sip"
        package.mkdir(parents=True)
        (work / "sipfleet" / "node" / "__init__.py").write_text("")
        for path in compiled.PACKAGE_DIR.glob("*.py"):
            shutil.copy2(path, package / path.name)
        sources = [f"sipfleet/node/sip/{name}.py" for name in compiled.modules()]
        mypyc = str(Path(sys.executable).parent / "mypyc")
        subprocess.run(
            [mypyc, "--explicit-package-bases", *sources],
            cwd=work,
            check=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SIPFLEET_PURE_PYTHON": "1"},
        )
        staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "modules").mkdir(parents=True)
        (staging / "lib").mkdir()
        for so in package.glob("*.so"):
            shutil.copy2(so, staging / "modules" / so.name)
        for so in work.glob("*__mypyc*.so"):  # the runtime shared by the modules
            shutil.copy2(so, staging / "lib" / so.name)
        (staging / "complete").write_text(f"{sys.version}\n{', '.join(compiled.modules())}\n")
        shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # another build of the same sources finished first: keep it
            shutil.rmtree(staging, ignore_errors=True)
            if not (target / "complete").is_file():
                raise


def check(target: Path) -> str | None:
    """Import the build in a fresh interpreter and parse a message; None when it
    works, else why not."""
    probe = (
        "from sipfleet.node.sip import compiled, parse_message\n"
        "assert compiled.ACTIVE, 'build not picked up'\n"
        "import sipfleet.node.sip.parser as p\n"
        "assert p.__file__.endswith('.so'), p.__file__\n"
        "m = parse_message(b'OPTIONS sip:a@b SIP/2.0\\r\\n'\n"
        "    b'Via: SIP/2.0/UDP h;branch=z9hG4bK1\\r\\nFrom: <sip:c@d>;tag=1\\r\\n'\n"
        "    b'To: <sip:a@b>\\r\\nCall-ID: x\\r\\nCSeq: 1 OPTIONS\\r\\n\\r\\n')\n"
        "assert m.cseq == (1, 'OPTIONS')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    return None if out.returncode == 0 else (out.stderr.strip().splitlines() or ["?"])[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--force", action="store_true", help="rebuild even if a build exists")
    args = p.parse_args(argv)
    target = compiled.build_dir()
    if (target / "complete").is_file() and not args.force:
        print(f"build_mypyc: up to date ({target})")
        return 0
    why = missing_tools()
    if why is not None:
        print(f"build_mypyc: not compiled, {why}: sip-node runs its pure Python core")
        return 0
    print(f"build_mypyc: compiling {len(compiled.modules())} modules into {target} ...")
    try:
        build(target)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stdout or b"").decode(errors="replace")[-2000:]
        print(f"build_mypyc: mypyc failed, the pure Python core runs:\n{tail}")
        return 0
    except OSError as exc:
        print(f"build_mypyc: could not write the build ({exc}), the pure Python core runs")
        return 0
    problem = check(target)
    if problem is not None:
        shutil.rmtree(target, ignore_errors=True)
        print(f"build_mypyc: the build does not import ({problem}); removed, pure Python runs")
        return 0
    prune(target)
    print("build_mypyc: done")
    return 0


def prune(keep: Path, days: float = 14.0) -> None:
    """Remove other builds (older source states) not rebuilt for `days`."""
    cutoff = time.time() - days * 86400
    for other in keep.parent.iterdir():
        marker = other / "complete"
        if other != keep and marker.is_file() and marker.stat().st_mtime < cutoff:
            shutil.rmtree(other, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
