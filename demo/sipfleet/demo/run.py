"""`sipfleet demo`: the whole tour, from an empty machine state to a PNG.

Brings the local control plane up (unless it runs already), installs the CRDs,
installs the operator from its image with the Helm chart, applies the demo fleet and
conference, plays the story (members join, chat, leave) while a live view
shows the fleet, then prints a summary and writes ``demo-timeline.png`` and
``demo-summary.json`` into the state dir. Everything it started is stopped at
the end, also on Ctrl-C, SIGTERM, errors and when ``timeout`` runs out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console
from sipfleet.demo import kubeside, manifests
from sipfleet.demo.kubeside import ChartOperator, DemoError
from sipfleet.demo.observe import Observer
from sipfleet.demo.plot import write_png
from sipfleet.demo.story import Acts, Show, acts_for
from sipfleet.demo.timeline import Summary, Timeline
from sipfleet.demo.view import View, summary_table
from sipfleet.devcluster import binaries
from sipfleet.devcluster.cluster import Cluster
from sipfleet.devcluster.controlplane import ControlPlane

DEFAULT_DURATION = 120.0
DEFAULT_MEMBERS = 40
SETUP_ALLOWANCE = 150.0
PNG_NAME = "demo-timeline.png"
SUMMARY_NAME = "demo-summary.json"


class DemoTimeout(DemoError):
    """The overall --timeout ran out."""


@contextmanager
def _stop_signals(timeout: float) -> Iterator[None]:
    """SIGTERM acts like Ctrl-C and SIGALRM ends the run after ``timeout`` seconds,
    so the cleanup in the callers' ``finally`` blocks always runs."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise DemoTimeout(f"the demo ran out of its --timeout of {timeout:g}s")

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_alarm = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGALRM, old_alarm)


def write_summary(path: Path, summary: Summary, show: Show, png: Path | None) -> Path:
    """The summary as JSON (read by the e2e test; handy for scripts)."""
    stats = show.stats
    data = {
        **dataclasses.asdict(summary),
        "scaled_out": summary.scaled_out,
        "scaled_back_in": summary.scaled_back_in,
        "joined": stats.joined,
        "left": stats.left,
        "join_failures": stats.join_failures,
        "redirects": stats.redirects,
        "transfers": stats.transfers,
        "full_retries": stats.full_retries,
        "scaled_in_at": show.scaled_in_at,
        "chats": [{"body": b, "reached": got, "expected": want} for b, got, want in show.chats],
        "png": str(png) if png else None,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def run_demo(
    state_dir: Path,
    *,
    duration: float = DEFAULT_DURATION,
    members: int = DEFAULT_MEMBERS,
    plot: bool = True,
    timeout: float | None = None,
    console: Console | None = None,
) -> int:
    """Run the demo; 0 when the fleet scaled out and back in, 1 when it did not."""
    try:
        acts = acts_for(duration)
    except ValueError as err:
        raise DemoError(str(err)) from None
    if not 1 <= members <= 200:
        raise DemoError(f"--members {members} must be between 1 and 200")
    console = console or Console()
    with _stop_signals(timeout or acts.total + SETUP_ALLOWANCE):
        return _run(state_dir, acts, members, plot, console)


def _run(state_dir: Path, acts: Acts, members: int, plot: bool, console: Console) -> int:
    def say(text: str) -> None:
        console.print(f"[bold]demo:[/bold] {text}", soft_wrap=True)

    plane = ControlPlane(
        state_dir, out=lambda line: console.print(f"cluster: {line}", soft_wrap=True)
    )
    started_cluster = not all(plane.running().values())
    workdir = state_dir / "demo"
    operator: ChartOperator | None = None
    cluster: Cluster | None = None
    try:
        say("starting the local Kubernetes control plane" if started_cluster
            else "using the local control plane that already runs")  # fmt: skip
        # A cluster the demo starts is held by it: if the demo is killed, the
        # next `up` elsewhere takes it down (ControlPlane.up).
        plane.up(hold=started_cluster)
        cluster = Cluster.of(plane, binaries.locate(build_if_missing=False))
        workdir.mkdir(parents=True, exist_ok=True)
        if kubeside.remove_leftovers(cluster):
            say(f"removed namespace {manifests.NAMESPACE} left by an interrupted run")
        say(f"installing the CRDs and namespace {manifests.NAMESPACE}")
        kubeside.install_crds(cluster, namespaces=(manifests.NAMESPACE,))
        say(
            f"installing the operator from its image with the Helm chart (release "
            f"{manifests.RELEASE}; its log is saved to {workdir / 'operator.log'} at the end)"
        )
        operator = ChartOperator(
            cluster, manifests.RELEASE, manifests.NAMESPACE, workdir / "operator.log", interval=1
        )
        operator.start()
        say(
            f"applying SipFleet {manifests.FLEET} (up to {manifests.MAX_NODES} nodes, "
            f"{manifests.MEMBERS_PER_SERVER} members per server) and SipConference "
            f"{manifests.CONFERENCE} ({manifests.GROUP})"
        )
        kubeside.apply(cluster, manifests.fleet(), manifests.conference())
        show = _play(cluster, acts, members, operator.alive, console)
        return _report(show, state_dir, plot, console)
    except KeyboardInterrupt:
        say("interrupted: stopping everything the demo started")
        return 130
    finally:
        _cleanup(cluster, operator, plane if started_cluster else None, say)


def _play(
    cluster: Cluster, acts: Acts, members: int, alive: Callable[[], bool], console: Console
) -> Show:
    timeline = Timeline()
    observer = Observer(str(cluster.kubeconfig), timeline)
    with View(console, acts.total, manifests.MEMBERS_PER_SERVER) as view:
        show = Show(observer, view, acts, members, alive)

        async def play() -> None:
            try:
                await show.run()
            finally:
                await observer.close()

        asyncio.run(play())
    return show


def _report(show: Show, state_dir: Path, plot: bool, console: Console) -> int:
    summary = show.observer.timeline.summary()
    console.print(summary_table(summary, show.stats, show.chats))
    png = None
    if plot:
        png = write_png(
            show.observer.timeline, state_dir / PNG_NAME, capacity=manifests.MEMBERS_PER_SERVER
        )
        console.print(f"timeline plot: {png.resolve()}", soft_wrap=True)
    json_path = write_summary(state_dir / SUMMARY_NAME, summary, show, png)
    console.print(f"summary: {json_path.resolve()}", soft_wrap=True)
    if not summary.scaled_out:
        console.print("[red]the fleet never used a second server: see demo/operator.log[/red]")
        return 1
    if not summary.scaled_back_in:
        console.print("[red]the fleet did not scale back in within the demo's time[/red]")
        return 1
    return 0


def _cleanup(
    cluster: Cluster | None,
    operator: ChartOperator | None,
    plane: ControlPlane | None,
    say: Callable[[str], None],
) -> None:
    """Delete the demo's objects (with the operator still running, for its finalizers),
    stop the operator, and bring the cluster down if the demo brought it up."""
    signal.setitimer(signal.ITIMER_REAL, 0)  # the cleanup itself is not cut short

    def patience(signum: int, frame: FrameType | None) -> None:
        say("still cleaning up, so nothing is left running; this takes about 15 s")

    old_int = signal.signal(signal.SIGINT, patience)
    old_term = signal.signal(signal.SIGTERM, patience)
    say("cleaning up: demo objects, the operator" + (", the cluster" if plane else ""))
    began = time.monotonic()
    try:
        if cluster is not None:
            if operator is not None and operator.alive():
                kubeside.delete_demo_objects(cluster)
            if operator is not None:
                try:
                    operator.stop()  # helm uninstall
                except DemoError as err:  # deleting the namespace removes its Deployment
                    say(f"could not uninstall the operator: {err}")
            kubeside.remove_leftovers(cluster)
    finally:
        # The operator's Pod goes with the cluster; on a cluster that stays up, a
        # release left by a failed cleanup is replaced by the next run's install.
        if plane is not None:
            plane.down()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        say(f"cleaned up in {time.monotonic() - began:.0f}s")
