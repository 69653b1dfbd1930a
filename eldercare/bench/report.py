"""`eldercare bench report`: every figure of the bench history plotted over the runs, one page.

One static HTML file (no network, no server): per bench, a grid of small charts, one per figure,
x = the runs in order (labelled by commit and day), the machine's 1-minute load average as the
first chart (a loaded machine explains a dip), and a table of the latest run against the one
before it, so a regression shows at a glance."""

from __future__ import annotations

import base64
import html
import io
import math
from collections import defaultdict
from pathlib import Path

from eldercare.bench.history import Entry

COLUMNS = 4
LOAD = "load average (1 min)"


def _chart(bench: str, runs: list[Entry]) -> bytes:
    """PNG: one small chart per figure of `bench` over its runs (quick runs hollow)."""
    import matplotlib

    matplotlib.use("Agg")  # no display here or on a server
    import matplotlib.pyplot as plt

    names = [LOAD, *sorted({k for r in runs for k in r.figures})]
    rows = math.ceil(len(names) / COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(4.2 * COLUMNS, 2.6 * rows), squeeze=False)
    x = list(range(len(runs)))
    labels = [r.label for r in runs]
    for ax, name in zip(axes.flat, names, strict=False):
        if name == LOAD:
            ys = [r.load_average[0] if r.load_average else math.nan for r in runs]
        else:
            ys = [r.figures.get(name, math.nan) for r in runs]
        ax.plot(x, ys, color="tab:blue", linewidth=1)
        full = [(i, y) for i, y in enumerate(ys) if not runs[i].quick]
        quick = [(i, y) for i, y in enumerate(ys) if runs[i].quick]
        if full:
            ax.plot(*zip(*full, strict=True), "o", color="tab:blue", markersize=4)
        if quick:
            ax.plot(*zip(*quick, strict=True), "o", markerfacecolor="none", color="tab:blue",
                    markersize=4)
        ax.set_title(name, fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=60, fontsize=6, ha="right")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"eldercare bench {bench} (hollow: --quick runs)", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def _change_table(runs: list[Entry]) -> str:
    """The latest run against the one before it, figure by figure."""
    last = runs[-1]
    before = runs[-2] if len(runs) > 1 else None
    rows = []
    for name in sorted(last.figures):
        now = last.figures[name]
        old = before.figures.get(name) if before else None
        change = f"{(now - old) / abs(old) * 100:+.0f} %" if old else "–"
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{_fmt(old)}</td><td>{_fmt(now)}</td>"
                    f"<td>{change}</td></tr>")
    head = (f"<tr><th>figure</th><th>{html.escape(before.label) if before else '–'}</th>"
            f"<th>{html.escape(last.label)}</th><th>change</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render(entries: list[Entry], unreadable: int = 0) -> str:
    """The report page for these history entries."""
    by_bench: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_bench[e.bench].append(e)
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>eldercare bench history</title><style>body{font-family:sans-serif;"
             "margin:1.5em}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid"
             " #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}</style></head><body><h1>eldercare bench history</h1>",
             f"<p>{len(entries)} runs of {len(by_bench)} benches."]
    if unreadable:
        parts.append(f" {unreadable} unreadable lines skipped.")
    parts.append("</p>")
    if not entries:
        parts.append("<p>No runs yet: run <code>eldercare bench …</code> first.</p>")
    for bench in sorted(by_bench):
        runs = by_bench[bench]
        png = base64.b64encode(_chart(bench, runs)).decode()
        parts.append(f"<h2>{html.escape(bench)}</h2>"
                     f"<img alt='{html.escape(bench)} figures over runs'"
                     f" src='data:image/png;base64,{png}'>")
        parts.append(_change_table(runs))
    parts.append("</body></html>")
    return "".join(parts)


def write(entries: list[Entry], out: Path, unreadable: int = 0) -> Path:
    """Write the report page to `out` (its folder created when missing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(entries, unreadable), encoding="utf-8")
    return out
