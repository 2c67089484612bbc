"""Disruptions with no member lost: members lost, time until every member is back
on a live server, group messages lost and duplicated, per scenario.

    .venv/bin/python bench/disruption.py [--only NAME ...] [--module MOD ...]
        [--state-dir DIR] [--keep-cluster] [--budget 1500] [--write FILE]

The scenarios and the fleet are the e2e tests' own (tests/e2e/disruptions.py,
imported from there, not copied): the real single-node cluster (`ControlPlane`,
as `sipfleet dev up`), the operator from its image installed by the Helm chart,
main + 3 nodes, 60 resident sipp members and a sipp ticker sending a group
MESSAGE every second. Each scenario runs once on the same fleet, in the order
of their names: (a) eviction, (b) delete pod, (c) rolling update of the node
template, (d) kill -9 of the busiest node's process and (e) of the main
server's (bench/opbench/crash.py, as tests/e2e/test_operator_crash.py), (f)
the operator SIGKILLed during each of (a)-(c), (g) the API server stopped for
30 s. ``--module NAME`` (a module on bench/ or tests/e2e that calls
``disruptions.scenario(name, fn)``) adds more.

Run it under the machine's real-node lock:
``flock /tmp/sipfleet-realcluster.lock .venv/bin/python bench/disruption.py``.

Per scenario: members that had to move (for a crash: those on the killed
server); members lost (left on a stopped server, counted in a MembersNotMoved
or MembersDropped Event, or for a crash not back within 60 s); seconds from
the disruption until every member was on a live server and main + 3 servers
were Ready (a crash's note adds when the last of its members was back); ticks
sent from the disruption until then, ticks lost (not answered 200, or missed
by at least one member), (member, tick) deliveries lost of those due, and
duplicate deliveries. Bounded: each wait has its own
timeout and no scenario starts after ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))  # the e2e harness and scenarios

import disruptions  # noqa: E402
from opbench import crash  # noqa: E402  (adds scenarios d and e)
from opbench.plane import bench_plane  # noqa: E402
from sipbench.procs import exit_on_sigterm  # noqa: E402
from sipfleet.devcluster import binaries  # noqa: E402
from sipfleet.devcluster.cluster import Cluster  # noqa: E402

HEADER = (
    "| scenario | members moved | members lost | settled (s) | ticks sent | ticks lost "
    "| deliveries lost / due | duplicates | note |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def row(r: disruptions.Result) -> str:
    """One scenario's line; for a crash, members not back in time count as lost."""
    t = r.ticks
    comeback = crash.COMEBACKS.get(r.scenario)
    lost = max(r.lost, comeback.not_back) if comeback else r.lost
    missed = len(t.unsent) * disruptions.MEMBERS + sum(len(m) for m in t.missed.values())
    return (
        f"| {r.scenario} | {r.moved} | {lost} | {r.settled_seconds:.1f} | {t.sent} "
        f"| {t.lost} | {missed} / {t.sent * disruptions.MEMBERS} | {t.duplicates} | {r.note} |"
    )


def failed_row(name: str, error: BaseException) -> str:
    text = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    return f"| {name} | - | - | - | - | - | - | - | FAILED: {text} |"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run only these scenarios")
    parser.add_argument(
        "--module", action="append", default=[], help="import it first (it adds scenarios)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="control plane state (default: a tmp dir, removed after the run)",
    )
    parser.add_argument("--keep-cluster", action="store_true", help="leave it running")
    parser.add_argument("--budget", type=float, default=1500.0, help="no new scenario after (s)")
    parser.add_argument("--write", type=Path, help="also write the table to this file")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    for name in args.module:
        importlib.import_module(name)
    chosen = sorted(n for n in disruptions.SCENARIOS if not args.only or n in args.only)
    unknown = set(args.only) - set(disruptions.SCENARIOS)
    if unknown:
        print(f"unknown scenarios {sorted(unknown)}; known: {list(disruptions.SCENARIOS)}")
        return 2
    began = time.monotonic()
    rows: list[str] = []
    fleet: disruptions.Fleet | None = None
    with bench_plane("sipfleet-disruption-", args.state_dir, args.keep_cluster) as (
        workdir,
        plane,
    ):
        try:
            plane.up(timeout=120.0, hold=True)  # held: an abandoned node is taken down next time
            cluster = Cluster.of(plane, binaries.locate(build_if_missing=False))
            fleet = disruptions.start_fleet(cluster, workdir)
            print(f"fleet up after {time.monotonic() - began:.0f}s", flush=True)
            for name in chosen:
                if time.monotonic() - began > args.budget:
                    print(f"budget of {args.budget:g}s used up; not running {name}", flush=True)
                    break
                print(f"scenario {name} ...", flush=True)
                try:
                    line = row(disruptions.run(fleet, name, disruptions.SCENARIOS[name]))
                except BaseException as exc:  # also pytest.fail() from a bounded wait
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        raise
                    line = failed_row(name, exc)
                print(line, flush=True)
                rows.append(line)
        finally:
            if fleet is not None:
                disruptions.stop_fleet(fleet.kube, fleet, workdir)
    load = Path("/proc/loadavg").read_text().split()[:3]
    table = "\n".join([HEADER, *rows])
    report = (
        f"Machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, load average {' '.join(load)} at the end; "
        f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
        f"{time.monotonic() - began:.0f}s.\n\n{table}\n"
    )
    print("\n" + report)
    if args.write:
        args.write.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
