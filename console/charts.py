"""Data of the elder page's charts: vital signs with the detectors' alert limits, and daily
activity, over a chosen number of days. The browser draws them with Apache ECharts (see
`assets.py`); labels are locale keys that the page translates (Simplified Chinese first).

The data comes from the registry's history API (`GET /api/v1/elders/{id}/readings` and
`/rollups`), called in-process with the viewer's own session so its scope rules apply."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import httpx

from detectors.config import DetectorConfig

DAYS = 7
RANGES = (1, 7, 30, 90)  # the time-range picker's choices, in days
# (reading type, field in `data`, locale key of the series)
VITALS: list[tuple[str, str, str]] = [
    ("bp", "systolic", "chart.systolic"), ("bp", "diastolic", "chart.diastolic"),
    ("bp", "pulse", "chart.pulse"), ("hr", "bpm", "chart.heart_rate"),
    ("spo2", "percent", "chart.spo2"), ("glucose", "value", "chart.glucose"),
]
PANELS = {"bp": "chart.panel_bp", "hr": "chart.panel_hr", "spo2": "chart.panel_spo2",
          "glucose": "chart.panel_glucose"}
# Each panel's alert limits: (detector setting, locale key of the line's label)
LIMITS: dict[str, list[tuple[str, str]]] = {
    "chart.panel_bp": [("sbp_high", "chart.limit_sbp_high"), ("dbp_high", "chart.limit_dbp_high"),
                       ("sbp_low", "chart.limit_sbp_low")],
    "chart.panel_hr": [("hr_high", "chart.limit_high"), ("hr_low", "chart.limit_low")],
    "chart.panel_spo2": [("spo2_low", "chart.limit_low")],
    "chart.panel_glucose": [("glucose_high", "chart.limit_high"),
                            ("glucose_low", "chart.limit_low")],
}
ACTIVITY_TYPES = ("motion", "steps", "door", "ok")


@lru_cache(maxsize=1)
def _limits() -> DetectorConfig:
    """The detectors' settings (ELDERCARE_DETECT_*), read once: the lines match the alerts."""
    return DetectorConfig()


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


def vitals(
    readings: list[dict[str, Any]], since: datetime, until: datetime,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One panel per kind of measurement that has data: its series (time, value) and its alert
    limits (the detectors' settings, or this elder's own thresholds in `overrides`)."""
    series: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for r in readings:
        for rtype, field, _key in VITALS:
            value = (r.get("data") or {}).get(field)
            if r.get("type") == rtype and isinstance(value, int | float) \
                    and not isinstance(value, bool):
                when = _when(r["event_time"]).astimezone(UTC).isoformat()
                series[(rtype, field)].append((when, float(value)))
    config, overrides = _limits(), overrides or {}
    panels = []
    for panel in dict.fromkeys(PANELS.values()):
        lines = [{"series": key, "points": sorted(series[(rtype, field)])}
                 for rtype, field, key in VITALS
                 if PANELS[rtype] == panel and series.get((rtype, field))]
        if not lines:
            continue
        limits = [{"key": label, "value": _limit(name, config, overrides)}
                  for name, label in LIMITS[panel]]
        panels.append({"key": panel, "series": lines, "limits": limits})
    return {"chart": "vitals", "since": since.isoformat(), "until": until.isoformat(),
            "panels": panels}


def _limit(name: str, config: DetectorConfig, overrides: dict[str, Any]) -> float:
    own = overrides.get(name)  # an elder's own threshold, when it is a number
    if isinstance(own, int | float) and not isinstance(own, bool):
        return float(own)
    return float(getattr(config, name))


def activity(
    rollups: list[dict[str, Any]], readings: list[dict[str, Any]], since: datetime,
    until: datetime,
) -> dict[str, Any]:
    """Events per day and kind (stacked bars). Uses the hourly rollups; counts raw readings
    when no rollups exist."""
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
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    return {"chart": "activity", "since": since.isoformat(), "until": until.isoformat(),
            "days": days,
            "series": [{"series": f"chart.{rtype}", "values": [per_day[rtype].get(d, 0.0)
                                                               for d in days]}
                       for rtype in ACTIVITY_TYPES if rtype in per_day]}
