"""The elder page's chart data: vital signs grouped in panels with the detectors' alert limits
(an elder's own threshold wins), daily activity per day and kind; and the pinned ECharts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from console import assets, charts

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _reading(kind: str, hours_ago: float, **data: object) -> dict[str, object]:
    return {"type": kind, "event_time": (NOW - timedelta(hours=hours_ago)).isoformat(),
            "data": data}


def test_vitals_panels_carry_series_and_alert_limits() -> None:
    readings = [_reading("bp", 2, systolic=150, diastolic=90, pulse=70),
                _reading("bp", 30, systolic=140, diastolic=85, pulse=72),
                _reading("spo2", 1, percent=95), _reading("spo2", 3, percent=True)]
    body = charts.vitals(readings, NOW - timedelta(days=7), NOW, {"spo2_low": 92, "sbp_high": "x"})
    panels = {p["key"]: p for p in body["panels"]}
    assert list(panels) == ["chart.panel_bp", "chart.panel_spo2"]  # no glucose, no heart rate
    systolic = panels["chart.panel_bp"]["series"][0]
    assert systolic["series"] == "chart.systolic"
    assert [v for _, v in systolic["points"]] == [140.0, 150.0]  # in time order
    limits = {x["key"]: x["value"] for x in panels["chart.panel_bp"]["limits"]}
    assert limits["chart.limit_sbp_high"] == 180.0  # a non-number override is ignored
    assert panels["chart.panel_spo2"]["limits"] == [{"key": "chart.limit_low", "value": 92.0}]
    assert [v for _, v in panels["chart.panel_spo2"]["series"][0]["points"]] == [95.0]


def test_activity_counts_per_day_and_fills_empty_days() -> None:
    readings = [_reading("motion", 1), _reading("motion", 2), _reading("steps", 26),
                _reading("bp", 1, systolic=120)]
    body = charts.activity([], readings, NOW - timedelta(days=2), NOW)
    assert body["days"] == ["2026-11-28", "2026-11-29", "2026-11-30"]
    series = {s["series"]: s["values"] for s in body["series"]}
    assert series == {"chart.motion": [0.0, 0.0, 2.0], "chart.steps": [0.0, 1.0, 0.0]}


def test_echarts_is_pinned_and_installed_with_its_licence() -> None:
    assert assets.ECHARTS_VERSION and len(assets.ECHARTS_SHA512) == 88  # pinned, base64
    assert assets.installed(), "run `make` (or python -m console.assets)"
    static = assets.static_dir()
    assert "Apache License" in (static / "echarts.LICENSE.txt").read_text()
