"""Vital signs: clinical thresholds (per elder where the registry sets them), a repeat reading
to confirm an extreme value that is likely a misread, and deviation from the elder's own robust
baseline (rolling median and MAD)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from detectors.base import ElderProfile, State, Verdict
from detectors.config import DetectorConfig
from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import CanonicalEvent

# Which event field carries which sign.
SIGNS: dict[str, tuple[tuple[str, str], ...]] = {
    "bp": (("sbp", "systolic"), ("dbp", "diastolic")),
    "glucose": (("glucose", "value"),),
    "spo2": (("spo2", "percent"),),
    "hr": (("hr", "bpm"),),
}
# The smallest spread a baseline is allowed, so a very steady elder is not judged on noise.
MIN_SPREAD = {"sbp": 5.0, "dbp": 4.0, "glucose": 0.5, "spo2": 1.0, "hr": 4.0}


@dataclass(frozen=True)
class Breach:
    rule: str          # e.g. "sbp_high"
    threshold: float
    hard: bool         # beyond the hard limit: no repeat needed
    confirm: bool      # a repeat reading is required unless hard
    severity: Severity


class Pending(State):
    event_id: str
    at: datetime
    value: float


class VitalsState(State):
    history: dict[str, list[float]] = {}
    pending: dict[str, Pending] = {}
    last_alert: dict[str, datetime] = {}


class VitalsDetector:
    name = "vitals"
    event_types = frozenset(SIGNS)
    has_timers = False  # see `on_timer`

    def __init__(self, config: DetectorConfig) -> None:
        self.c = config
        self.confirm_window = timedelta(seconds=config.vital_confirm_s)
        self.episode = timedelta(seconds=config.vital_episode_s)

    def initial(self) -> VitalsState:
        return VitalsState()

    def breaches(self, sign: str, x: float, th: dict[str, float]) -> list[Breach]:
        """The threshold rules `x` breaks, with the elder's own limits where set."""
        def t(name: str) -> float:
            return float(th.get(name, getattr(self.c, name)))
        H, C, M = Severity.HIGH, Severity.CRITICAL, Severity.MEDIUM
        out: list[Breach] = []
        if sign == "sbp":
            if x >= t("sbp_high"):
                out.append(Breach("sbp_high", t("sbp_high"), x >= t("sbp_hard_high"), True, H))
            elif x < t("sbp_low"):
                out.append(Breach("sbp_low", t("sbp_low"), x < t("sbp_hard_low"), True, H))
        elif sign == "dbp" and x >= t("dbp_high"):
            out.append(Breach("dbp_high", t("dbp_high"), x >= t("dbp_hard_high"), True, H))
        elif sign == "glucose":
            if x < t("glucose_severe"):
                out.append(Breach("glucose_severe", t("glucose_severe"), True, False, C))
            elif x < t("glucose_low"):
                out.append(Breach("glucose_low", t("glucose_low"), True, False, H))
            elif x > t("glucose_high"):
                out.append(Breach("glucose_high", t("glucose_high"),
                                  x > t("glucose_hard_high"), True, M))
        elif sign == "spo2" and x < t("spo2_low"):
            out.append(Breach("spo2_low", t("spo2_low"), x < t("spo2_hard_low"), True, H))
        elif sign == "hr":
            if x < t("hr_low"):
                out.append(Breach("hr_low", t("hr_low"), x < t("hr_hard_low"), True, H))
            elif x > t("hr_high"):
                out.append(Breach("hr_high", t("hr_high"), x > t("hr_hard_high"), True, H))
        return out

    def deviation(self, sign: str, x: float, history: list[float]) -> Breach | None:
        """A reading far from the elder's own robust baseline (needs a repeat to alert)."""
        if len(history) < self.c.baseline_min:
            return None
        values = np.asarray(history, dtype=float)
        median = float(np.median(values))
        spread = max(1.4826 * float(np.median(np.abs(values - median))), MIN_SPREAD[sign])
        z = (x - median) / spread
        if abs(z) <= self.c.baseline_z:
            return None
        return Breach(f"{sign}_deviation_{'high' if z > 0 else 'low'}", round(median, 1),
                      False, True, Severity.MEDIUM)

    def on_event(
        self, state: VitalsState, event: CanonicalEvent, profile: ElderProfile,
    ) -> Verdict[VitalsState]:
        fields = SIGNS.get(event.type)
        if fields is None:
            return Verdict(state)
        now = event.event_time
        history = dict(state.history)
        # Expired first readings are dropped here, by the readings' own time, not by the
        # watermark: a replay or a device that uploads late is behind the wall clock.
        pending = {k: p for k, p in state.pending.items()
                   if abs(now - p.at) <= self.confirm_window}
        last_alert = dict(state.last_alert)
        alerts: list[Alert] = []
        for sign, field in fields:
            raw = event.data.get(field)
            if not isinstance(raw, int | float):
                continue
            x = float(raw)
            found = self.breaches(sign, x, profile.thresholds)
            if not found:
                dev = self.deviation(sign, x, history.get(sign, []))
                found = [dev] if dev else []
            for b in found:
                earlier = pending.get(b.rule)
                confirmed = (earlier is not None and now - earlier.at <= self.confirm_window
                             and earlier.event_id != event.event_id)
                if b.confirm and not b.hard and not confirmed:
                    pending[b.rule] = Pending(event_id=event.event_id, at=now, value=x)
                    continue
                pending.pop(b.rule, None)
                last = last_alert.get(b.rule)
                if last is not None and timedelta(0) <= now - last < self.episode:
                    continue  # the same episode: already alerted
                last_alert[b.rule] = now
                first_id = earlier.event_id if confirmed and earlier else event.event_id
                readings = ([{"value": earlier.value, "at": earlier.at.isoformat(),
                              "event_id": earlier.event_id}] if confirmed and earlier else [])
                readings.append({"value": x, "at": now.isoformat(), "event_id": event.event_id})
                alerts.append(Alert(
                    alert_id=alert_id("vital", profile.elder_id, b.rule, first_id),
                    elder_id=event.elder_id, community_id=event.community_id, kind="vital",
                    severity=b.severity, event_time=now, detected_at=event.received_at,
                    device_id=event.device_id, room=event.room,
                    evidence=[{"sign": sign, "rule": b.rule, "threshold": b.threshold,
                               "readings": readings, "confirmed": confirmed, "hard": b.hard}],
                ))
            history[sign] = ([*history.get(sign, []), x])[-self.c.baseline_window:]
        # Copied, not validated again: every value is already of its field's type.
        return Verdict(state.model_copy(update={"history": history, "pending": pending,
                                                "last_alert": last_alert}), alerts)

    def on_timer(
        self, state: VitalsState, now: datetime, profile: ElderProfile,
    ) -> Verdict[VitalsState]:
        """Nothing to do: a first reading waits for its repeat in event time (see `on_event`).
        Expiring it by the watermark lost repeats whenever the watermark ran ahead of the
        readings (a replay of the past, a meter that uploads late)."""
        return Verdict(state)
