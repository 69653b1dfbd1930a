"""Smoke, gas and heat alarms: critical, with the room and whether the elder lives alone.

Optional filters for a known-noisy alarm (both off by default, for safety): a minimum time the
alarm must keep sounding, and confirmation by a second signal (another alarm in the home or a
heat reading); an alarm left unconfirmed is still alerted when the window closes, as high."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from detectors.base import ElderProfile, Verdict
from detectors.config import DetectorConfig
from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import CanonicalEvent

ALARM_TYPES = ("smoke", "gas", "heat")


class AlarmEpisode(BaseModel):
    first_event_id: str
    community_id: str
    device_id: str
    room: str | None = None
    started_at: datetime
    last_at: datetime
    sounding: bool = True
    confirmed: bool = False
    alerted: bool = False
    evidence: list[dict[str, Any]] = []


class AlarmState(BaseModel):
    episodes: dict[str, AlarmEpisode] = {}


class AlarmDetector:
    name = "alarms"

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.episode = timedelta(seconds=config.alarm_episode_s)
        self.hold = timedelta(seconds=config.alarm_min_hold_s)
        self.window = timedelta(seconds=config.alarm_confirm_window_s)

    def initial(self) -> AlarmState:
        return AlarmState()

    def on_event(
        self, state: AlarmState, event: CanonicalEvent, profile: ElderProfile,
    ) -> Verdict[AlarmState]:
        if event.type not in ALARM_TYPES:
            return Verdict(state)
        episodes = dict(state.episodes)
        current = episodes.get(event.type)
        sounding = event.data.get("state") is not False
        if not sounding:
            if current is None:
                return Verdict(state)
            if not current.alerted and event.event_time - current.started_at < self.hold:
                del episodes[event.type]  # debounced: it stopped before the minimum hold
            else:
                episodes[event.type] = current.model_copy(update={"sounding": False})
            return Verdict(AlarmState(episodes=episodes))
        hot = (event.data.get("temperature_c") or -273.0) >= self.config.alarm_heat_c
        others = any(k != event.type and e.sounding and
                     abs(event.event_time - e.last_at) <= self.window
                     for k, e in episodes.items())
        ev = event.model_dump(mode="json")
        if current is not None and event.event_time - current.last_at <= self.episode:
            current = current.model_copy(update={
                "last_at": max(current.last_at, event.event_time), "sounding": True,
                "confirmed": current.confirmed or hot or others
                or event.device_id != current.device_id,
                "evidence": [*current.evidence[-4:], ev]})
        else:
            current = AlarmEpisode(
                first_event_id=event.event_id, community_id=event.community_id,
                device_id=event.device_id, room=event.room, started_at=event.event_time,
                last_at=event.event_time, confirmed=hot or others, evidence=[ev])
        if others:  # the other alarm is confirmed by this one too
            for k, e in episodes.items():
                if k != event.type and e.sounding:
                    episodes[k] = e.model_copy(update={"confirmed": True})
        episodes[event.type] = current
        return self._judge(AlarmState(episodes=episodes), event.event_time, profile)

    def on_timer(
        self, state: AlarmState, now: datetime, profile: ElderProfile,
    ) -> Verdict[AlarmState]:
        if not state.episodes:
            return Verdict(state)
        expired = [k for k, e in state.episodes.items()
                   if now - e.last_at > self.episode and (e.alerted or not e.sounding)]
        if expired:
            state = AlarmState(episodes={k: e for k, e in state.episodes.items()
                                         if k not in expired})
        return self._judge(state, now, profile)

    def _judge(self, state: AlarmState, now: datetime, profile: ElderProfile
               ) -> Verdict[AlarmState]:
        alerts: list[Alert] = []
        episodes = dict(state.episodes)
        for kind, e in state.episodes.items():
            if e.alerted or not e.sounding or now - e.started_at < self.hold:
                continue
            if self.config.alarm_confirm and not e.confirmed:
                if now - e.started_at < self.window:
                    continue
                severity = Severity.HIGH
            else:
                severity = Severity.CRITICAL
            alerts.append(Alert(
                alert_id=alert_id(kind, e.first_event_id, e.started_at.isoformat()),
                elder_id=profile.elder_id,
                community_id=e.community_id, kind=kind, severity=severity,
                event_time=e.started_at, detected_at=now, device_id=e.device_id, room=e.room,
                evidence=[*e.evidence, {"lives_alone": profile.lives_alone, "room": e.room,
                                        "confirmed": e.confirmed}],
            ))
            episodes[kind] = e.model_copy(update={"alerted": True})
        if not alerts:
            return Verdict(state)
        return Verdict(AlarmState(episodes=episodes), alerts)
