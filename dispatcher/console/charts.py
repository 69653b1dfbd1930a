"""Charts of the elder page: the last 7 days of vital signs and of daily activity, drawn on the
server with matplotlib as PNG (no JavaScript charting library to vendor; the machines are offline).

The data comes from the registry's history API (`GET /api/v1/elders/{id}/readings` and
`/rollups`), called in-process with the viewer's own session so its scope rules apply."""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
from matplotlib.figure import Figure

from eldercare.i18n import t

matplotlib.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "WenQuanYi Micro Hei",
                                          "DejaVu Sans"]
matplotlib.rcParams["axes.unicode_minus"] = False

DAYS = 7
# (reading type, field in `data`, locale key of the series)
VITALS: list[tuple[str, str, str]] = [
    ("bp", "systolic", "chart.systolic"), ("bp", "diastolic", "chart.diastolic"),
    ("bp", "pulse", "chart.pulse"), ("hr", "bpm", "chart.heart_rate"),
    ("spo2", "percent", "chart.spo2"), ("glucose", "value", "chart.glucose"),
]
PANELS = {"bp": "chart.panel_bp", "hr": "chart.panel_bp", "spo2": "chart.panel_spo2",
          "glucose": "chart.panel_glucose"}
ACTIVITY_TYPES = ("motion", "steps", "door", "ok")


async def history(
    client: httpx.AsyncClient, elder_id: str, what: str, since: datetime, until: datetime,
) -> list[dict[str, Any]]:
    """Rows of the history API (`what` = readings or rollups); empty if it is not available."""
    r = await client.get(f"/api/v1/elders/{elder_id}/{what}",
                         params={"since": since.isoformat(), "until": until.isoformat()})
    if r.status_code != 200:
        return []
    rows: list[dict[str, Any]] = r.json().get(what, [])
    return rows


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _figure(height: float) -> tuple[Figure, Any]:
    # The object API, not pyplot: no global state, so charts can render in worker threads.
    fig = Figure(figsize=(9, height), dpi=100)
    return fig, fig.subplots()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _no_data(ax: Any, lang: str) -> None:
    ax.text(0.5, 0.5, t("chart.no_data", lang), ha="center", va="center", fontsize=16,
            color="#6b7280", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def vitals_png(readings: list[dict[str, Any]], now: datetime, lang: str) -> bytes:
    """Vital signs of the last 7 days: one panel per kind of measurement that has data."""
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for r in readings:
        for rtype, field, _key in VITALS:
            value = (r.get("data") or {}).get(field)
            if r.get("type") == rtype and isinstance(value, int | float):
                series[(rtype, field)].append((_when(r["event_time"]), float(value)))
    panels = sorted({PANELS[rtype] for rtype, _ in series}, key=list(PANELS.values()).index)
    fig = Figure(figsize=(9, 2.6 * max(1, len(panels))), dpi=100)
    axes = fig.subplots(max(1, len(panels)), 1, sharex=True, squeeze=False)
    if not panels:
        _no_data(axes[0][0], lang)
        axes[0][0].set_title(t("chart.vitals", lang))
        return _png(fig)
    for ax, panel in zip((a[0] for a in axes), panels, strict=True):
        for rtype, field, key in VITALS:
            points = sorted(series.get((rtype, field), []))
            if points and PANELS[rtype] == panel:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                        markersize=3, linewidth=1.5, label=t(key, lang))
        ax.set_title(t(panel, lang), loc="left", fontsize=12)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)  # beside, not over
        ax.set_xlim(now - timedelta(days=DAYS), now)
    axes[-1][0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))  # type: ignore[no-untyped-call]
    return _png(fig)


def activity_png(
    rollups: list[dict[str, Any]], readings: list[dict[str, Any]], now: datetime, lang: str,
) -> bytes:
    """Daily activity of the last 7 days: events per day and kind, stacked bars. Uses the hourly
    rollups; counts raw readings when no rollups exist."""
    per_day: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    if rollups:
        for r in rollups:
            if r.get("type") in ACTIVITY_TYPES:
                day = _when(r["hour"]).astimezone(UTC).date().isoformat()
                per_day[r["type"]][day] += float(r.get("count") or 0)
    else:
        for r in readings:
            if r.get("type") in ACTIVITY_TYPES:
                day = _when(r["event_time"]).astimezone(UTC).date().isoformat()
                per_day[r["type"]][day] += 1
    days = [(now - timedelta(days=d)).date().isoformat() for d in range(DAYS - 1, -1, -1)]
    fig, ax = _figure(3.2)
    if not per_day:
        _no_data(ax, lang)
    else:
        bottom = [0.0] * len(days)
        for rtype in ACTIVITY_TYPES:
            if rtype not in per_day:
                continue
            heights = [per_day[rtype].get(d, 0.0) for d in days]
            ax.bar([d[5:] for d in days], heights, bottom=bottom, label=t(f"chart.{rtype}", lang))
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.legend(loc="upper left", fontsize=9, ncols=4)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylabel(t("chart.events_per_day", lang))
    ax.set_title(t("chart.activity", lang), loc="left", fontsize=12)
    return _png(fig)
