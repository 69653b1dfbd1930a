"""Fall detection on synthetic accelerometer windows: falls, hard sits, dropped canes, cancels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from detectors.base import ElderProfile
from detectors.falls import FallDetector, FallParams, FallState
from detectors.falls.features import looks_like_fall, window_features
from foundation.contracts.alerts import alert_id
from foundation.contracts.events import CanonicalEvent

RATE = 20.0
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PROFILE = ElderProfile(elder_id="elder-1", community_id="c-1")
UPRIGHT = np.array([0.0, 1.0, 0.0])
LYING = np.array([1.0, 0.0, 0.0])


def _still(direction: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = round(seconds * RATE)
    return direction + rng.normal(0.0, 0.01, (n, 3))


def _walking(seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    bounce = 0.35 * np.sin(2 * np.pi * 1.8 * t)
    return UPRIGHT + np.stack([0.1 * np.cos(2 * np.pi * 0.9 * t), bounce, 0 * t], axis=1) \
        + rng.normal(0.0, 0.02, (t.size, 3))


def fall_window(seed: int = 0) -> np.ndarray:
    """3 s upright, a free-fall dip while turning, a 3.5 g impact, then 4 s lying still."""
    rng = np.random.default_rng(seed)
    turning = np.array([[0.1, 0.25, 0.0], [0.2, 0.15, 0.0], [0.25, 0.1, 0.0]])
    impact = np.array([[2.8, 2.1, 0.3], [1.6, 0.6, 0.1]])  # |first| ~ 3.5 g
    return np.vstack([_still(UPRIGHT, 3.0, rng), turning, impact, _still(LYING, 4.0, rng)])


def hard_sit_window(seed: int = 1) -> np.ndarray:
    """Dropping onto a chair: a dip, a 2.6 g jolt, then sitting still, trunk tilted 5 degrees."""
    rng = np.random.default_rng(seed)
    tilted = np.array([np.sin(np.radians(5)), np.cos(np.radians(5)), 0.0])
    return np.vstack([_still(UPRIGHT, 3.0, rng), [[0, 0.6, 0], [0, 0.5, 0]], [[0.3, 2.6, 0.1]],
                      _still(tilted, 4.0, rng)])


def dropped_cane_window(seed: int = 2) -> np.ndarray:
    """A cane swinging with each step, knocked over: it hits the floor (4 g) and lies flat."""
    rng = np.random.default_rng(seed)
    return np.vstack([_walking(3.0, rng), [[0.5, 0.4, 0]], [[3.6, 1.7, 0.2]],
                      _still(LYING, 4.0, rng)])


def event(kind: str, at: datetime, msg: str, device: str = "cane-1",
          device_kind: str = "smart_cane", **data: Any) -> CanonicalEvent:
    return CanonicalEvent(
        event_id=f"{device}/{msg}", elder_id="elder-1", community_id="c-1", device_id=device,
        device_kind=device_kind, room="living", type=kind, event_time=at, received_at=at,
        data=data,
    )


def accel(window: np.ndarray, at: datetime, msg: str, **kw: Any) -> CanonicalEvent:
    return event("accel", at, msg, rate_hz=RATE, samples=window.tolist(), **kw)


def run(detector: FallDetector, events: list[CanonicalEvent], until: datetime,
        tick_s: float = 1.0) -> list[tuple[datetime, Any]]:
    """Feed events in time order and tick timers every `tick_s` of event time, as the engine
    does from its watermark; return (tick time, alert) for every alert raised."""
    state = detector.initial()
    raised: list[tuple[datetime, Any]] = []
    pending = sorted(events, key=lambda e: e.event_time)
    now = T0
    while now <= until:
        while pending and pending[0].event_time <= now:
            state = detector.on_event(state, pending.pop(0), PROFILE).state
        verdict = detector.on_timer(state, now, PROFILE)
        state = verdict.state
        raised += [(now, a) for a in verdict.alerts]
        now += timedelta(seconds=tick_s)
    return raised


@pytest.mark.parametrize("kind", ["smart_cane", "smart_watch"])
def test_a_fall_is_an_impact_then_lying_still_turned(kind: str) -> None:
    params = FallParams()
    f = window_features(fall_window(), RATE, params)
    assert 3.3 < f.peak_g < 3.7
    assert f.freefall_min_g is not None and f.freefall_min_g < 0.6
    assert f.orientation_change_deg is not None and f.orientation_change_deg > 80
    assert looks_like_fall(f, params.thresholds_for(kind))


@pytest.mark.parametrize("kind", ["smart_cane", "smart_watch"])
def test_sitting_down_hard_is_not_a_fall(kind: str) -> None:
    params = FallParams()
    f = window_features(hard_sit_window(), RATE, params)
    assert f.peak_g > 2.5
    assert not looks_like_fall(f, params.thresholds_for(kind))
    assert run(FallDetector(), [accel(hard_sit_window(), T0, "w1", device_kind=kind)],
               T0 + timedelta(seconds=90)) == []


def test_an_uncancelled_fall_alerts_once_when_the_cancel_window_closes() -> None:
    detector = FallDetector()
    window = fall_window()
    raised = run(detector, [accel(window, T0, "w1")], T0 + timedelta(seconds=120))
    assert len(raised) == 1
    fired_at, alert = raised[0]
    impact = T0 + timedelta(seconds=3.0 + 3 / RATE)  # 3 s upright + 3 turning samples
    assert alert.event_time == impact
    assert fired_at == T0 + timedelta(seconds=34)  # first tick at/after impact + 30 s
    assert alert.kind == "fall" and alert.severity == "critical"
    assert alert.alert_id == alert_id("fall", "accel", "cane-1/w1")
    assert alert.device_id == "cane-1" and alert.room == "living"
    evidence = alert.evidence[0]
    assert evidence["window_event_id"] == "cane-1/w1"
    assert 3.3 < evidence["peak_g"] < 3.7
    assert evidence["orientation_change_deg"] > 80
    assert evidence["still_std_g"] < 0.05


def test_no_alert_before_the_deadline_and_state_survives_a_restart() -> None:
    detector = FallDetector()
    state = detector.on_event(detector.initial(), accel(fall_window(), T0, "w1"), PROFILE).state
    assert detector.on_timer(state, T0 + timedelta(seconds=30), PROFILE).alerts == []
    restored = FallState.model_validate_json(state.model_dump_json())
    verdict = detector.on_timer(restored, T0 + timedelta(seconds=40), PROFILE)
    assert [a.alert_id for a in verdict.alerts] == [alert_id("fall", "accel", "cane-1/w1")]
    assert detector.on_timer(verdict.state, T0 + timedelta(seconds=80), PROFILE).alerts == []


def test_im_ok_within_the_cancel_window_means_no_alert() -> None:
    events = [accel(fall_window(), T0, "w1"),
              event("ok", T0 + timedelta(seconds=20), "ok1", device="watch-1",
                    device_kind="smart_watch")]
    assert run(FallDetector(), events, T0 + timedelta(seconds=120)) == []


def test_im_ok_after_the_cancel_window_is_too_late() -> None:
    events = [accel(fall_window(), T0, "w1"), event("ok", T0 + timedelta(seconds=60), "ok1")]
    assert len(run(FallDetector(), events, T0 + timedelta(seconds=120))) == 1


def test_im_ok_arriving_before_its_fall_window_still_cancels() -> None:
    detector = FallDetector()
    state = detector.on_event(detector.initial(), event("ok", T0 + timedelta(seconds=15), "ok1"),
                              PROFILE).state
    state = detector.on_event(state, accel(fall_window(), T0, "w1"), PROFILE).state
    assert detector.on_timer(state, T0 + timedelta(seconds=90), PROFILE).alerts == []


def test_a_dropped_cane_while_the_elder_keeps_walking_is_not_a_fall() -> None:
    window = dropped_cane_window()
    assert looks_like_fall(window_features(window, RATE, FallParams()),
                           FallParams().thresholds_for("smart_cane"))  # alone it looks like one
    events = [accel(window, T0, "w1"),
              event("steps", T0 + timedelta(seconds=12), "s1", device="watch-1",
                    device_kind="smart_watch", steps=14)]
    assert run(FallDetector(), events, T0 + timedelta(seconds=120)) == []


def test_a_dropped_cane_picked_up_again_is_not_a_fall() -> None:
    rng = np.random.default_rng(5)
    events = [accel(dropped_cane_window(), T0, "w1"),
              accel(_walking(5.0, rng), T0 + timedelta(seconds=15), "w2")]
    assert run(FallDetector(), events, T0 + timedelta(seconds=120)) == []


def test_getting_up_shown_by_an_upright_later_window_cancels() -> None:
    rng = np.random.default_rng(6)
    events = [accel(fall_window(), T0, "w1"),
              accel(_still(UPRIGHT, 4.0, rng), T0 + timedelta(seconds=20), "w2")]
    assert run(FallDetector(), events, T0 + timedelta(seconds=120)) == []


def test_zero_steps_and_other_devices_windows_do_not_cancel() -> None:
    rng = np.random.default_rng(7)
    events = [accel(fall_window(), T0, "w1"),
              event("steps", T0 + timedelta(seconds=10), "s1", steps=0),
              accel(_walking(4.0, rng), T0 + timedelta(seconds=12), "w9", device="watch-1",
                    device_kind="smart_watch")]
    assert len(run(FallDetector(), events, T0 + timedelta(seconds=120))) == 1


def test_the_devices_own_fall_flag_is_not_alerted_twice() -> None:
    events = [accel(fall_window(), T0, "w1"), event("fall", T0 + timedelta(seconds=4), "f1")]
    assert run(FallDetector(), events, T0 + timedelta(seconds=120)) == []


def test_a_replayed_window_gives_one_alert() -> None:
    window = fall_window()
    events = [accel(window, T0, "w1"), accel(window, T0, "w1")]
    assert len(run(FallDetector(), events, T0 + timedelta(seconds=120))) == 1


def test_a_window_cut_short_after_the_impact_still_alerts() -> None:
    params = FallParams()
    short = fall_window()[: 3 * 20 + 5]  # ends two samples after the impact
    f = window_features(short, RATE, params)
    assert f.still_std_g is None and f.orientation_change_deg is None
    assert looks_like_fall(f, params.thresholds_for("smart_watch"))


def test_bad_samples_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        window_features([[1.0, 2.0]], RATE, FallParams())
    detector = FallDetector()
    state = detector.on_event(detector.initial(), event("accel", T0, "bad", rate_hz=RATE,
                                                        samples=[]), PROFILE).state
    assert state == detector.initial()


def test_a_cane_picked_up_within_its_own_window_is_no_fall() -> None:
    """Knocked over, a second on the floor, lifted upright and walked on, all in one window."""
    rng = np.random.default_rng(8)
    lift = np.linspace(LYING, UPRIGHT, 10)
    window = np.vstack([_walking(2.0, rng), [[0.5, 0.4, 0]], [[2.6, 1.9, 0.2]],
                        _still(LYING, 1.0, rng), lift, _walking(3.0, rng)])
    f = window_features(window, RATE, FallParams())
    assert f.peak_g > 3.0 and f.ends_upright
    assert run(FallDetector(), [accel(window, T0, "w1")], T0 + timedelta(seconds=90)) == []


def test_struggling_on_the_floor_does_not_cancel() -> None:
    """A later window full of movement but still in the fallen posture is not getting up."""
    rng = np.random.default_rng(9)
    struggle = LYING + rng.normal(0.0, 0.25, (80, 3))
    events = [accel(fall_window(), T0, "w1"), accel(struggle, T0 + timedelta(seconds=15), "w2")]
    assert len(run(FallDetector(), events, T0 + timedelta(seconds=120))) == 1
