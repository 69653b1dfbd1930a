"""The detectors as pure functions of (state, event or timer): no Kafka, no database."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from detectors.alarms import AlarmDetector
from detectors.base import ElderProfile
from detectors.checkin import CheckinDetector
from detectors.config import DetectorConfig
from detectors.episodes import EpisodeDetector
from detectors.health import DeviceHealthDetector
from detectors.inactivity import InactivityDetector
from detectors.suite import Suite, build
from detectors.vitals import VitalsDetector
from foundation.contracts.events import CanonicalEvent

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Monday
_ids = itertools.count()


def ev(type_: str, t: datetime, device: str = "watch", kind: str = "smart_watch",
       **data: Any) -> CanonicalEvent:
    return CanonicalEvent(
        event_id=f"E1-{device}/{next(_ids)}", elder_id="E1", community_id="c1",
        device_id=f"E1-{device}", device_kind=kind, room="厨房", type=type_, event_time=t,
        received_at=t, data=data)


def profile(**kw: Any) -> ElderProfile:
    return ElderProfile("E1", "c1", **kw)


def test_every_sos_press_is_an_alert_numbered_within_its_episode() -> None:
    """A second press is never silent: the dispatcher decides what it means for the incident."""
    d = EpisodeDetector("sos", "sos", "sos", 900)
    v1 = d.on_event(d.initial(), ev("sos", T0), profile())
    assert [a.kind for a in v1.alerts] == ["sos"] and v1.alerts[0].severity == "critical"
    second = ev("sos", T0 + timedelta(seconds=30))
    v2 = d.on_event(v1.state, second, profile())
    assert len(v2.alerts) == 1 and v2.state.presses == 2
    assert v2.alerts[0].alert_id != v1.alerts[0].alert_id
    assert v2.alerts[0].evidence[1]["press"] == 2
    assert v2.alerts[0].evidence[1]["episode"] == v1.alerts[0].evidence[0]["event_id"]
    v3 = d.on_event(v2.state, ev("sos", T0 + timedelta(hours=1)), profile())
    assert len(v3.alerts) == 1 and v3.alerts[0].evidence[1]["press"] == 1
    again = d.on_event(v1.state, second, profile())
    assert again.alerts[0].alert_id == v2.alerts[0].alert_id, "a replay repeats the id"


def test_smoke_alarm_is_critical_with_room_and_living_alone() -> None:
    d = AlarmDetector(DetectorConfig())
    v = d.on_event(d.initial(), ev("smoke", T0, "smoke", "smoke_alarm", state=True),
                   profile(lives_alone=True))
    (alert,) = v.alerts
    assert alert.kind == "smoke" and alert.severity == "critical" and alert.room == "厨房"
    assert alert.evidence[-1]["lives_alone"] is True
    again = d.on_event(v.state, ev("smoke", T0 + timedelta(seconds=20), "smoke", "smoke_alarm"),
                       profile())
    assert again.alerts == []


def test_alarm_confirmation_option_waits_for_a_second_signal() -> None:
    d = AlarmDetector(DetectorConfig(alarm_confirm=True, alarm_confirm_window_s=120))
    v = d.on_event(d.initial(), ev("smoke", T0, "smoke", "smoke_alarm"), profile())
    assert v.alerts == []
    hot = d.on_event(v.state, ev("heat", T0 + timedelta(seconds=10), "heat", "heat_alarm",
                                 temperature_c=70.0), profile())
    assert {a.kind for a in hot.alerts} == {"smoke", "heat"}
    assert all(a.severity == "critical" for a in hot.alerts)
    # Unconfirmed: still alerted when the window closes, as high.
    late = d.on_timer(v.state, T0 + timedelta(seconds=121), profile())
    assert [(a.kind, a.severity) for a in late.alerts] == [("smoke", "high")]


def bp(sys_: float, dia: float, t: datetime) -> CanonicalEvent:
    return ev("bp", t, "bp", "bp_meter", systolic=sys_, diastolic=dia)


def test_single_bp_misread_needs_a_repeat_reading() -> None:
    d = VitalsDetector(DetectorConfig())
    v = d.on_event(d.initial(), bp(195, 100, T0), profile())
    assert v.alerts == []
    normal = d.on_event(v.state, bp(132, 80, T0 + timedelta(minutes=4)), profile())
    assert normal.alerts == []
    confirmed = d.on_event(v.state, bp(188, 110, T0 + timedelta(minutes=5)), profile())
    (alert,) = confirmed.alerts
    assert alert.kind == "vital" and alert.evidence[0]["rule"] == "sbp_high"
    assert alert.evidence[0]["confirmed"] and len(alert.evidence[0]["readings"]) == 2
    # A repeat after the window does not confirm.
    stale = d.on_timer(v.state, T0 + timedelta(hours=1), profile())
    assert d.on_event(stale.state, bp(190, 100, T0 + timedelta(hours=1)), profile()).alerts == []


def test_repeat_reading_confirms_when_the_watermark_runs_ahead_of_the_readings() -> None:
    """A replay of last month, or a meter that uploads late: the timer sweeps run on a
    watermark hours ahead of the readings, and the repeat must still confirm."""
    d = VitalsDetector(DetectorConfig())
    first = d.on_event(d.initial(), bp(196, 124, T0), profile())
    swept = d.on_timer(first.state, T0 + timedelta(hours=3), profile())
    alerts = d.on_event(swept.state, bp(192, 122, T0 + timedelta(minutes=3)), profile()).alerts
    assert sorted(a.evidence[0]["rule"] for a in alerts) == ["dbp_high", "sbp_high"]
    assert all(a.evidence[0]["confirmed"] and len(a.evidence[0]["readings"]) == 2
               for a in alerts)


def test_vital_hard_limits_and_severe_hypoglycaemia_alert_at_once() -> None:
    d = VitalsDetector(DetectorConfig())
    assert d.on_event(d.initial(), bp(230, 125, T0), profile()).alerts
    (hypo,) = d.on_event(d.initial(), ev("glucose", T0, "g", "glucose_meter", value=2.6),
                         profile()).alerts
    assert hypo.severity == "critical" and hypo.evidence[0]["rule"] == "glucose_severe"


def test_per_elder_thresholds_override_the_defaults() -> None:
    d = VitalsDetector(DetectorConfig())
    mine = profile(thresholds={"sbp_high": 160.0, "sbp_hard_high": 170.0})
    (alert,) = d.on_event(d.initial(), bp(172, 90, T0), mine).alerts
    assert alert.evidence[0]["threshold"] == 160.0
    assert d.on_event(d.initial(), bp(172, 90, T0), profile()).alerts == []


def test_deviation_from_own_baseline_is_confirmed_by_a_repeat() -> None:
    d = VitalsDetector(DetectorConfig())
    state = d.initial()
    for i in range(15):
        state = d.on_event(state, ev("hr", T0 + timedelta(hours=i), bpm=62 + i % 3),
                           profile()).state
    t = T0 + timedelta(hours=20)
    first = d.on_event(state, ev("hr", t, bpm=112), profile())
    assert first.alerts == []  # 112 is inside the clinical limits and not yet confirmed
    (alert,) = d.on_event(first.state, ev("hr", t + timedelta(minutes=3), bpm=115),
                          profile()).alerts
    assert alert.evidence[0]["rule"] == "hr_deviation_high" and alert.severity == "medium"


def _live_home(d: InactivityDetector, until: datetime, activity_until: datetime) -> Any:
    """Motion every 10 min until `activity_until`, heartbeats every 10 min until `until`."""
    state, t = d.initial(), T0 - timedelta(hours=4)
    while t <= until:
        state = d.on_event(state, ev("heartbeat", t, "m", "motion_sensor"), profile()).state
        if t <= activity_until:
            state = d.on_event(state, ev("motion", t, "m", "motion_sensor"), profile()).state
        t += timedelta(minutes=10)
    return state


def test_daytime_silence_alerts_for_an_elder_living_alone_only_while_home_is_alive() -> None:
    d = InactivityDetector(DetectorConfig())
    now = T0 + timedelta(hours=4)  # 14:00 local, silent since 10:00
    state = _live_home(d, now, T0)
    alone, family = profile(lives_alone=True), profile(lives_alone=False)
    (alert,) = d.on_timer(state, now, alone).alerts
    assert alert.kind == "inactivity" and alert.evidence[0]["rule"] == "silence"
    assert d.on_timer(state, T0 + timedelta(hours=2.5), family).alerts == []
    assert d.on_timer(state, now, profile(lives_alone=True, away=True)).alerts == []
    dead = _live_home(d, T0, T0)  # heartbeats stopped with the activity
    assert d.on_timer(dead, now, alone).alerts == []


def test_no_activity_by_usual_wake_up_alerts() -> None:
    d = InactivityDetector(DetectorConfig())
    evening = T0 + timedelta(hours=10)  # 20:00 local
    state = _live_home(d, evening + timedelta(hours=13), evening)  # heartbeats go on
    morning = datetime(2026, 3, 3, 1, 5, tzinfo=UTC)  # 09:05 local, nobody got up
    (alert,) = d.on_timer(state, morning, profile(lives_alone=True)).alerts
    assert alert.evidence[0]["rule"] == "no_wakeup"


def test_missed_daily_checkin_is_a_wellbeing_check_once_a_day() -> None:
    d = CheckinDetector(DetectorConfig())
    me = profile(thresholds={"checkin_deadline_h": 11.0})
    s = d.on_event(d.initial(), ev("heartbeat", T0 - timedelta(days=1)), me).state
    late = T0 + timedelta(hours=1, minutes=1)  # 11:01 local
    v = d.on_timer(s, late, me)
    assert [a.kind for a in v.alerts] == ["checkin_missed"] and v.alerts[0].severity == "medium"
    assert d.on_timer(v.state, late + timedelta(minutes=5), me).alerts == []
    ok = d.on_event(s, ev("ok", T0 - timedelta(hours=1)), me).state
    assert d.on_timer(ok, late, me).alerts == []
    assert d.on_timer(s, late, profile()).alerts == []  # not enrolled


def _home(d: DeviceHealthDetector, t: datetime) -> Any:
    state = d.initial()
    for dev, kind in (("watch", "smart_watch"), ("m", "motion_sensor")):
        state = d.on_event(state, ev("heartbeat", t, dev, kind), profile()).state
    return state


def test_dead_gateway_is_one_offline_alert() -> None:
    d = DeviceHealthDetector(DetectorConfig())
    devices = {"E1-watch": 60, "E1-m": 60}
    state = _home(d, T0)
    v = d.on_timer(state, T0 + timedelta(seconds=121), profile(devices=devices))
    assert [(a.kind, a.maintenance) for a in v.alerts] == [("gateway_offline", True)]
    later = d.on_timer(v.state, T0 + timedelta(hours=1), profile(devices=devices))
    assert later.alerts == []


def test_one_dead_device_in_a_live_home_is_device_offline() -> None:
    d = DeviceHealthDetector(DetectorConfig())
    devices = {"E1-watch": 60, "E1-m": 60}
    state = _home(d, T0)
    for k in range(1, 5):  # the motion sensor keeps talking, the watch does not
        state = d.on_event(state, ev("heartbeat", T0 + timedelta(seconds=50 * k), "m",
                                     "motion_sensor"), profile(devices=devices)).state
    v = d.on_timer(state, T0 + timedelta(seconds=200), profile(devices=devices))
    assert [(a.kind, a.device_id) for a in v.alerts] == [("device_offline", "E1-watch")]


def test_platform_outage_rearms_offline_timers() -> None:
    d = DeviceHealthDetector(DetectorConfig())
    state = _home(d, T0)
    back = T0 + timedelta(hours=5)
    rearmed = profile(devices={"E1-watch": 60, "E1-m": 60}, rearmed_at=back)
    assert d.on_timer(state, back + timedelta(seconds=60), rearmed).alerts == []


def test_low_battery_once_per_episode_and_tamper() -> None:
    d = DeviceHealthDetector(DetectorConfig())
    s = d.initial()
    v1 = d.on_event(s, ev("heartbeat", T0, battery=15), profile())
    assert [a.kind for a in v1.alerts] == ["low_battery"] and v1.alerts[0].maintenance
    assert d.on_event(v1.state, ev("heartbeat", T0, battery=14), profile()).alerts == []
    (tamper,) = d.on_event(s, ev("heartbeat", T0, tamper=True), profile()).alerts
    assert tamper.kind == "tamper"
    (opened,) = d.on_event(s, ev("tamper", T0), profile()).alerts
    assert opened.kind == "tamper" and opened.maintenance
    assert d.on_event(s, ev("tamper", T0, state=False), profile()).alerts == []


def test_water_leak_alerts_once_per_wet_episode() -> None:
    from detectors.suite import build

    (leak,) = [d for d in build() if d.name == "water_leak"]
    wet = leak.on_event(leak.initial(), ev("water_leak", T0, state=True), profile())
    assert [(a.kind, a.severity) for a in wet.alerts] == [("water_leak", "high")]
    still = leak.on_event(wet.state, ev("water_leak", T0 + timedelta(minutes=1), state=True),
                          profile())
    assert still.alerts == []
    dry = leak.on_event(wet.state, ev("water_leak", T0, state=False), profile())
    assert dry.alerts == []


def test_suite_state_round_trips_through_json() -> None:
    suite = Suite(build(DetectorConfig()))
    state = suite.initial()
    suite.on_event(state, bp(195, 100, T0), profile())
    suite.on_event(state, ev("heartbeat", T0), profile())
    loaded = suite.load(json.loads(suite.dump_json(state)))
    _, alerts, _ = suite.on_event(loaded, bp(190, 100, T0 + timedelta(minutes=3)), profile())
    assert [a.kind for a in alerts] == ["vital"]


def test_evaluation_on_generated_streams_finds_the_injected_emergencies() -> None:
    from detectors.evaluation.score import format_table
    from simulators.evaluation import evaluate

    result = evaluate(elders=4, scored_days=2, warmup_days=2, seed=3)
    rows = {r["kind"]: r for r in result["rows"]}
    for kind in ("sos", "smoke", "vital"):
        if kind in rows and rows[kind]["labels"]:
            assert rows[kind]["sensitivity"] == 1.0, format_table(result)
    assert rows.get("vital", {"false_alerts": 0})["false_alerts"] == 0
    assert "| sos |" in format_table(result)
