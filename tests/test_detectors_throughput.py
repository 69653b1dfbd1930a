"""The detectors' fast paths give the same verdicts as the plain ones: events skip only the
detectors that cannot concern them, timer sweeps only those without timers, states copy the
way pydantic copies them, and an elder's profile is reused only while nothing in it can
differ."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from detectors.base import ElderProfile
from detectors.config import DetectorConfig
from detectors.health import DeviceSeen, HealthState
from detectors.inactivity import InactivityState
from detectors.profiles import ProfileCache
from detectors.suite import ElderState, Suite, build
from foundation.contracts.alerts import Alert
from foundation.contracts.events import CanonicalEvent
from simulators import accel, payloads

T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def _ev(n: int, device: str, kind: str, type_: str, t: datetime, **data: Any) -> CanonicalEvent:
    return CanonicalEvent(event_id=f"{device}/{n}", elder_id="E-1", community_id="c-1",
                          device_id=device, device_kind=kind, room="客厅", type=type_,
                          event_time=t, received_at=t, data=data)


def _stream() -> list[CanonicalEvent]:
    """A morning of one elder: every kind of event the detectors act on, some alerting."""
    fall = payloads.accel_window(accel.fall(seed=3), accel.DEFAULT_RATE_HZ)
    walk = payloads.accel_window(accel.walking(accel.DEFAULT_RATE_HZ, accel.WINDOW_S, 4),
                                 accel.DEFAULT_RATE_HZ)
    plan: list[tuple[str, str, str, dict[str, Any]]] = [
        ("W", "smart_watch", "heartbeat", {"battery": 90}),
        ("M", "motion_sensor", "motion", {}),
        ("W", "smart_watch", "hr", {"bpm": 72}),
        ("B", "bp_meter", "bp", {"systolic": 195, "diastolic": 100}),
        ("B", "bp_meter", "bp", {"systolic": 192, "diastolic": 101}),
        ("S", "sos_button", "sos", {}),
        ("C", "smart_cane", "accel", {k: v for k, v in fall.items() if k != "type"}),
        ("C", "smart_cane", "accel", {k: v for k, v in walk.items() if k != "type"}),
        ("C", "smart_cane", "steps", {"steps": 40}),
        ("K", "smoke_alarm", "smoke", {"state": True}),
        ("W", "smart_watch", "heartbeat", {"battery": 12}),
        ("S", "sos_button", "ok", {}),
        ("W", "smart_watch", "offline", {"reason": "last_will"}),
    ]
    return [_ev(i, dev, kind, type_, T0 + timedelta(minutes=3 * i), **data)
            for i, (dev, kind, type_, data) in enumerate(plan)]


def _every_detector(suite: Suite, state: ElderState, event: CanonicalEvent,
                    profile: ElderProfile) -> list[Alert]:
    """The reference: every detector sees every event."""
    alerts: list[Alert] = []
    for d in suite.detectors:
        current = state.get(d.name, suite._initial[d.name])
        verdict = d.on_event(current, event, profile)
        if verdict.state is not current:
            state[d.name] = verdict.state
        alerts.extend(verdict.alerts)
    return alerts


def test_events_skip_only_detectors_that_cannot_concern_them() -> None:
    suite = Suite(build(DetectorConfig()))
    heartbeat = suite.looks_at("heartbeat")
    assert {"inactivity", "health", "checkin", "safe_zone"} <= set(heartbeat)
    assert not {"sos", "fall_flag", "water_leak", "alarms", "vitals", "fall"} & set(heartbeat)
    assert {"vitals"} <= set(suite.looks_at("bp"))
    assert {"fall"} <= set(suite.looks_at("accel"))

    fast, slow = suite.initial(), suite.initial()
    profile = ElderProfile("E-1", "c-1", lives_alone=True)
    kinds = set()
    for event in _stream():
        _, alerts, _ = suite.on_event(fast, event, profile)
        reference = _every_detector(suite, slow, event, profile)
        assert [a.alert_id for a in alerts] == [a.alert_id for a in reference], event.type
        kinds |= {a.kind for a in alerts}
    assert {"sos", "smoke", "vital", "low_battery"} <= kinds  # the stream does alert
    assert suite.dump_json(fast) == suite.dump_json(slow)
    later = T0 + timedelta(hours=3)
    assert [a.alert_id for a in suite.on_timer(fast, later, profile)[1]] == \
        [a.alert_id for a in suite.on_timer(slow, later, profile)[1]]


def test_timers_skip_only_detectors_whose_timers_change_nothing() -> None:
    suite = Suite(build(DetectorConfig()))
    untimed = [d for d in suite.detectors if not getattr(d, "has_timers", True)]
    assert {"sos", "fall_flag", "water_leak", "vitals"} <= {d.name for d in untimed}
    assert not {"inactivity", "health", "checkin", "alarms", "fall", "safe_zone"} & {
        d.name for d in untimed}
    state = suite.initial()
    profile = ElderProfile("E-1", "c-1", lives_alone=True)
    for event in _stream():  # every untimed detector's state, at every step, at later times
        suite.on_event(state, event, profile)
        for d in untimed:
            current = state.get(d.name, suite._initial[d.name])
            for later in (timedelta(0), timedelta(minutes=5), timedelta(days=2)):
                verdict = d.on_timer(current, event.event_time + later, profile)
                assert verdict.state is current and not verdict.alerts, d.name


def test_state_copies_as_pydantic_copies() -> None:
    seen = DeviceSeen(kind="smart_watch", last=T0)
    states: list[tuple[BaseModel, dict[str, Any]]] = [
        (seen, {"last": T0 + timedelta(minutes=1), "heard": False}),
        (HealthState(devices={"W": seen}), {"devices": {}, "due": T0}),
        (InactivityState(), {"last_alive": T0, "night_hours": {"M": 3}}),
        (InactivityState(), {}),
    ]
    for state, update in states:
        before, fields_before = state.model_dump_json(), set(state.model_fields_set)
        mine = state.model_copy(update=update)
        theirs = BaseModel.model_copy(state, update=update)
        assert mine is not state and type(mine) is type(state)
        assert mine == theirs
        assert mine.model_dump_json() == theirs.model_dump_json()
        assert mine.model_fields_set == theirs.model_fields_set
        assert state.model_dump_json() == before  # the original is left as it was
        assert state.model_fields_set == fields_before
        again = mine.model_copy(update=update)  # a copy of a copy, its fields set shared
        assert again.model_fields_set == BaseModel.model_copy(
            theirs, update=update).model_fields_set


async def test_profile_is_reused_only_while_it_cannot_differ() -> None:
    cache = ProfileCache(None, ttl_s=60)
    record = cache.get("E-1", "c-1")
    first = record.at(T0)
    assert record.at(T0 + timedelta(minutes=5)) is first
    rearmed = record.at(T0, rearmed_at=T0)
    assert rearmed is not first and rearmed.rearmed_at == T0
    record.away.append((T0 + timedelta(hours=1), None))
    assert record.at(T0 + timedelta(hours=2)).away
    assert not record.at(T0).away
    record.thresholds["sbp_high"] = 170.0
    await cache.refresh(["E-1"])  # a registry edit arrives with the next refresh
    assert record.at(T0).thresholds == {"sbp_high": 170.0}
    assert record.at(T0) is not first
