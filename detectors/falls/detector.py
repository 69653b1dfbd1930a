"""The fall detector: a fall-like accelerometer window opens a short cancel window; an alert
goes out when it closes unless the elder got up or pressed "I'm OK".

Pending falls live in the detector state, so the cancel window survives a restart; the alert is
raised by `on_timer` once the event-time watermark passes the deadline."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from detectors.base import ElderProfile, Verdict
from detectors.falls.classifier import (
    FallClassifier,
    load_models,
    position_of,
    shipped_models,
)
from detectors.falls.features import (
    WindowFeatures,
    looks_like_fall,
    shows_recovery,
    window_features,
)
from detectors.falls.params import FallParams
from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import CanonicalEvent


class PendingFall(BaseModel):
    """A detected impact waiting out its cancel window."""

    window_event_id: str
    device_id: str
    device_kind: str
    room: str | None = None
    impact_time: datetime
    deadline: datetime
    before: tuple[float, float, float] | None = None
    fallen: tuple[float, float, float] | None = None
    evidence: dict[str, Any]


class FallState(BaseModel):
    """One elder's pending falls and the latest signs of life that may cancel one."""

    pending: list[PendingFall] = []
    last_ok: datetime | None = None
    last_steps: datetime | None = None
    device_flags: dict[str, datetime] = {}


class FallDetector:
    """Detector 3 (server side): a window the learned classifier of the device's position
    calls a fall (`classifier.py`; the threshold rule - impact, stillness, posture change -
    where no model applies), then a cancel window. The device's own fall flag is alerted by
    the immediate detector; here it only suppresses a second alert for the same fall."""

    name = "fall"

    def __init__(self, params: FallParams | None = None) -> None:
        self.params = params or FallParams()
        self.models: dict[str, FallClassifier] = {}
        if self.params.use_model:
            self.models = (load_models(Path(self.params.model_file)) if self.params.model_file
                           else shipped_models())

    def initial(self) -> FallState:
        return FallState()

    def on_event(self, state: FallState, event: CanonicalEvent, profile: ElderProfile
                 ) -> Verdict[FallState]:
        if event.type == "accel":
            return Verdict(self._on_window(state, event))
        if event.type == "ok":
            return Verdict(self._cancel(state.model_copy(update={"last_ok": _later(
                state.last_ok, event.event_time)}), event.event_time, None))
        if event.type == "steps" and int(event.data.get("steps", 0)) > 0:
            return Verdict(self._cancel(state.model_copy(update={"last_steps": _later(
                state.last_steps, event.event_time)}), event.event_time, None))
        if event.type == "fall":
            flags = dict(state.device_flags)
            flags[event.device_id] = event.event_time
            state = state.model_copy(update={"device_flags": flags})
            return Verdict(self._cancel(state, event.event_time, event.device_id))
        return Verdict(state)

    def on_timer(self, state: FallState, now: datetime, profile: ElderProfile
                 ) -> Verdict[FallState]:
        due = [p for p in state.pending if p.deadline <= now]
        if not due:
            return Verdict(self._forget(state, now))
        keep = [p for p in state.pending if p.deadline > now]
        alerts = [self._alert(p, profile, now) for p in due]
        return Verdict(self._forget(state.model_copy(update={"pending": keep}), now), alerts)

    def _on_window(self, state: FallState, event: CanonicalEvent) -> FallState:
        try:
            rate = float(event.data["rate_hz"])
            features = window_features(event.data["samples"], rate, self.params)
        except (KeyError, TypeError, ValueError):
            return state  # ingest validated the schema; a degenerate window carries no verdict
        verdict = self._judge(event, rate, features)
        if verdict is None:
            return self._recover(state, event, features)
        if any(p.window_event_id == event.event_id for p in state.pending):
            return state  # a replayed window
        impact = event.event_time + timedelta(seconds=features.peak_offset_s)
        pending = PendingFall(
            window_event_id=event.event_id, device_id=event.device_id,
            device_kind=event.device_kind, room=event.room, impact_time=impact,
            deadline=impact + timedelta(seconds=self.params.cancel_window_s),
            before=features.before, fallen=features.after,
            evidence={**_evidence(event, features, impact), **verdict},
        )
        if self._cancelled_already(state, pending):
            return state
        return state.model_copy(update={"pending": [*state.pending, pending]})

    def _judge(self, event: CanonicalEvent, rate: float, features: WindowFeatures
               ) -> dict[str, Any] | None:
        """Evidence when the window looks like a fall (None when not): the learned model of
        the device's position where there is one, else the threshold rule."""
        model = self.models.get(position_of(event.device_kind))
        if model is None:
            thresholds = self.params.thresholds_for(event.device_kind)
            return {"judged_by": "rule"} if looks_like_fall(features, thresholds) else None
        probability, _ = model.judge(event.data["samples"], rate)
        if probability < model.threshold:
            return None
        return {"judged_by": f"model:{model.position}",
                "fall_probability": round(probability, 3)}

    def _cancelled_already(self, state: FallState, p: PendingFall) -> bool:
        """Signs of life that arrived before the window itself (events can come out of order)."""
        for seen in (state.last_ok, state.last_steps):
            if seen is not None and p.impact_time <= seen <= p.deadline:
                return True
        flag = state.device_flags.get(p.device_id)
        match = timedelta(seconds=self.params.device_flag_match_s)
        return flag is not None and abs(flag - p.impact_time) <= match

    def _cancel(self, state: FallState, at: datetime, flagged_device: str | None) -> FallState:
        """Drop pending falls that a sign of life at `at` cancels (any device of the elder), or
        that a device flag at `at` from `flagged_device` already alerted."""
        match = timedelta(seconds=self.params.device_flag_match_s)

        def cancels(p: PendingFall) -> bool:
            if flagged_device is not None:
                return p.device_id == flagged_device and abs(at - p.impact_time) <= match
            return p.impact_time <= at <= p.deadline

        return state.model_copy(update={"pending": [p for p in state.pending if not cancels(p)]})

    def _recover(self, state: FallState, event: CanonicalEvent, f: WindowFeatures) -> FallState:
        """A later, non-fall window from the same device showing walking or upright posture."""
        def recovered(p: PendingFall) -> bool:
            return (p.device_id == event.device_id and p.impact_time < event.event_time
                    <= p.deadline and shows_recovery(f, p.before, p.fallen, self.params))

        kept = [p for p in state.pending if not recovered(p)]
        if len(kept) == len(state.pending):
            return state
        return state.model_copy(update={"pending": kept})

    def _forget(self, state: FallState, now: datetime) -> FallState:
        """Signs of life older than a cancel window can no longer cancel anything."""
        horizon = now - timedelta(seconds=self.params.cancel_window_s
                                  + self.params.device_flag_match_s)
        update: dict[str, Any] = {}
        if state.last_ok is not None and state.last_ok < horizon:
            update["last_ok"] = None
        if state.last_steps is not None and state.last_steps < horizon:
            update["last_steps"] = None
        flags = {d: t for d, t in state.device_flags.items() if t >= horizon}
        if len(flags) != len(state.device_flags):
            update["device_flags"] = flags
        return state.model_copy(update=update) if update else state

    def _alert(self, p: PendingFall, profile: ElderProfile, now: datetime) -> Alert:
        return Alert(
            alert_id=alert_id("fall", "accel", p.window_event_id), elder_id=profile.elder_id,
            community_id=profile.community_id, kind="fall", severity=Severity.CRITICAL,
            event_time=p.impact_time, detected_at=now, device_id=p.device_id, room=p.room,
            evidence=[p.evidence],
        )


def _evidence(event: CanonicalEvent, f: WindowFeatures, impact: datetime) -> dict[str, Any]:
    return {
        "source": "accel_window", "window_event_id": event.event_id,
        "device_id": event.device_id, "device_kind": event.device_kind,
        "impact_time": impact.isoformat(), "rate_hz": event.data.get("rate_hz"),
        **f.evidence(),
    }


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a
