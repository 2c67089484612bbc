"""What the newcomer sees: a rich Live view on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

from collections import deque

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from sipfleet.demo.members import CrowdStats
from sipfleet.demo.observe import Snapshot
from sipfleet.demo.timeline import Summary

STATE_STYLE = {
    "Ready": "green",
    "Starting": "yellow",
    "Pending": "yellow",
    "Draining": "magenta",
    "Terminating": "red",
}
PLAIN_EVERY = 5.0
NOTES = 8


def counters(stats: CrowdStats, summary: Summary, sep: str = "  |  ") -> str:
    """Member-side counts, then the operator's Events (``sep`` between the two)."""
    return (
        f"members: joined {stats.joined}  left {stats.left}  redirects (302) {stats.redirects}  "
        f"transfers (REFER) {stats.transfers}  told 'full' (480) {stats.full_retries}{sep}"
        f"operator: scale-outs {summary.scale_outs}  scale-ins {summary.scale_ins}  "
        f"nodes deleted {summary.nodes_deleted}"
    )


def plain_line(snap: Snapshot, act: str, stats: CrowdStats, summary: Summary) -> str:
    servers = ", ".join(
        f"{s.name} {s.members if s.members is not None else '-'} ({s.state})" for s in snap.servers
    )
    return (
        f"[{snap.t:5.0f}s] {act}: {sum(snap.hosting().values())} members on "
        f"{len(snap.hosting())} servers [{servers}]; {counters(stats, summary)}"
    )


def servers_table(snap: Snapshot, capacity: int) -> Table:
    table = Table(title="servers hosting the group", title_justify="left", expand=False)
    for column in ("server", "role", "state", "members"):
        table.add_column(column, justify="right" if column == "members" else "left")
    table.add_column("load", min_width=capacity)
    for server in snap.servers:
        members = server.members
        bar = "" if members is None else "█" * members + "·" * max(0, capacity - members)
        table.add_row(
            server.name,
            server.role,
            Text(server.state, style=STATE_STYLE.get(server.state, "")),
            "-" if members is None else str(members),
            bar,
        )
    return table


class View:
    """Live on a terminal; without one, a plain line every few seconds plus notes."""

    def __init__(self, console: Console, duration: float, capacity: int) -> None:
        self.console = console
        self.duration = duration
        self.capacity = capacity
        self.notes: deque[str] = deque(maxlen=NOTES)
        self._live: Live | None = None
        self._last_plain = -PLAIN_EVERY

    def __enter__(self) -> View:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def note(self, t: float, text: str) -> None:
        line = f"[{t:5.0f}s] {text}"
        self.notes.append(line)
        if self._live is None:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def update(self, snap: Snapshot, act: str, stats: CrowdStats, summary: Summary) -> None:
        if self._live is None:
            if snap.t - self._last_plain >= PLAIN_EVERY:
                self._last_plain = snap.t
                self.console.print(
                    plain_line(snap, act, stats, summary), markup=False, soft_wrap=True
                )
            return
        self._live.update(self._render(snap, act, stats, summary))

    def _render(
        self, snap: Snapshot, act: str, stats: CrowdStats, summary: Summary
    ) -> RenderableType:
        head = Text.assemble(
            ("sipfleet demo  ", "bold"),
            (f"{act}", "bold cyan"),
            f"   t={snap.t:.0f}s of {self.duration:.0f}s   conference: {snap.phase}, "
            f"{snap.conference_members} members",
        )
        parts: list[RenderableType] = [head, servers_table(snap, self.capacity)]
        parts.append(Text(counters(stats, summary, "\n")))
        if snap.decision:
            parts.append(Text(f"operator's last decision: {snap.decision}", style="dim"))
        parts.append(Text("\n".join(self.notes) or "(no events yet)", style="italic"))
        return Group(*parts)


def summary_table(summary: Summary, stats: CrowdStats, chats: list[tuple[str, int, int]]) -> Table:
    """The end-of-demo table; ``chats`` holds (body, members reached, members expected)."""
    table = Table(title="sipfleet demo: summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("story length", f"{summary.duration:.0f} s"),
        ("members joined / left", f"{stats.joined} / {stats.left}"),
        ("joins that failed", str(stats.join_failures)),
        ("peak members (servers' own counts)", str(summary.peak_members)),
        ("peak servers hosting the group", str(summary.peak_servers)),
        ("servers seen", ", ".join(summary.servers_seen) or "-"),
        ("servers at the end", str(summary.final_servers)),
        ("redirects (302 followed)", str(stats.redirects)),
        ("transfers (REFER followed)", str(stats.transfers)),
        ("join attempts told 'full' (480, retried)", str(stats.full_retries)),
        ("sessions ended by a server", str(stats.dropped)),
        ("scale-out / scale-in events", f"{summary.scale_outs} / {summary.scale_ins}"),
        ("nodes deleted", str(summary.nodes_deleted)),
        ("transfer events (operator)", str(summary.transfer_events)),
    ]
    rows += [(f"chat {body!r} reached", f"{got} of {want} members") for body, got, want in chats]
    for what, value in rows:
        table.add_row(what, value)
    return table
