"""What the SIP benchmarks (sip_bench.py, security_bench.py) share on the command line.

One parser for the options they have in common (the report's path, the rate
search's step and budget, the smoke run, the work dir, which sip-node code runs),
the work dir's life, and writing the report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"


def bench_parser(doc: str, report: str) -> argparse.ArgumentParser:
    """A parser with the shared options; `report` is the default file name in
    bench/results/. The caller adds its own options, then calls `parse(p, argv)`."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS / report,
        help=f"markdown report to write (default bench/results/{report})",
    )
    p.add_argument("--step-seconds", type=float, default=3.0, help="length of one rate step (s)")
    p.add_argument(
        "--budget", type=float, default=60.0, help="seconds the rate search may take per server"
    )
    p.add_argument(
        "--sip-node-dir",
        type=Path,
        help="measure the sip-node code in this folder (a patched copy of sip-node/) "
        "instead of the installed one",
    )
    p.add_argument(
        "--pure-python",
        action="store_true",
        help="run sip-node's pure Python SIP core even when a mypyc build exists "
        "(sets SIPFLEET_PURE_PYTHON=1; see scripts/build_mypyc.py)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: shorter steps and runs")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, sipp traces)")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; `--pure-python` is applied at once (sip-node inherits the environment)."""
    args = p.parse_args(argv)
    if args.pure_python:
        os.environ["SIPFLEET_PURE_PYTHON"] = "1"
    return args


@contextmanager
def workdir(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh temporary work dir, removed afterwards unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"work dir kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def write_report(text: str, out: Path) -> None:
    """Print the report and write it to `out`."""
    print()
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")
