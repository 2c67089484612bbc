"""The PNG timeline: members per server over time (stacked), scale events marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt
from sipfleet.demo.timeline import (
    NODE_DELETED,
    SCALE_IN,
    SCALE_OUT,
    TRANSFER,
    Timeline,
    mark_label,
)

MARK_STYLE = {
    SCALE_OUT: ("black", "-", "scale out (node created)"),
    SCALE_IN: ("black", "--", "scale in (node drained)"),
    NODE_DELETED: ("black", ":", "node deleted"),
    TRANSFER: ("0.45", "-.", "members transferred (REFER)"),
}
LABEL_SHIFT = 8  # points between labels of events seen in the same tick


def write_png(timeline: Timeline, path: Path, *, capacity: int | None = None) -> Path:
    """Draw ``timeline`` into ``path`` (PNG) and return the path."""
    fig, ax = plt.subplots(figsize=(12, 6), dpi=110)
    try:
        times = timeline.times()
        servers = timeline.servers()
        if servers:
            ax.stackplot(
                times, *(timeline.series(s) for s in servers), labels=servers,
                step="post", alpha=0.85, colors=[f"C{i % 10}" for i in range(len(servers))],
            )  # fmt: skip
        top = max((s.total for s in timeline.samples), default=0)
        if capacity:
            for level in range(capacity, top + capacity, capacity):
                ax.axhline(level, color="0.85", linewidth=0.8, zorder=0)
        labelled: set[str] = set()
        at_time: dict[float, int] = {}
        for mark in timeline.marks:
            if mark.kind not in MARK_STYLE:
                continue
            color, style, label = MARK_STYLE[mark.kind]
            ax.axvline(
                mark.t, color=color, linestyle=style, linewidth=1.4,
                label=None if label in labelled else label,
            )  # fmt: skip
            labelled.add(label)
            shift = at_time.get(mark.t, 0)
            at_time[mark.t] = shift + 1
            ax.annotate(
                mark_label(mark), (mark.t, 1.0), xycoords=("data", "axes fraction"),
                xytext=(2 + LABEL_SHIFT * shift, -16), textcoords="offset points",
                rotation=90, va="top",
                fontsize=7, color=color,
            )  # fmt: skip
        for i, (start, end, name) in enumerate(timeline.act_spans()):
            if i % 2:
                ax.axvspan(start, end, color="0.94", zorder=0)
            ax.annotate(
                name, ((start + end) / 2, 1.0), xycoords=("data", "axes fraction"),
                xytext=(0, -4), textcoords="offset points", ha="center", va="top",
                fontsize=8, color="0.3", style="italic",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            )  # fmt: skip
        ax.set_xlabel("seconds since the first member joined")
        ax.set_ylabel("members of the group (stacked by server)")
        ax.set_title("sipfleet demo: members per server, with the operator's scale events")
        ax.set_ylim(0, max(top, 1) * 1.35)
        ax.set_xlim(0, max(times, default=1.0))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
