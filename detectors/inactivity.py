"""Inactivity: silence that is improbable for this elder at this time of day.

Two rules on the learned routine: no activity by the usual wake-up hour plus a margin, and a
daytime silence whose probability under the routine is tiny. Stricter for an elder living
alone. Never while the elder is away, and only while the home's devices are alive: a silent
home with dead devices is the device-health detector's gateway-offline alert instead."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from detectors.alerts import Alert, Severity, alert_id
from detectors.base import ElderProfile, Verdict
from detectors.config import DetectorConfig
from detectors.routine import Routine, hour_of_week, hour_start, silence_probability, wake_hour
from devices.catalogue import CATALOGUE, DeviceKind
from devices.events import CanonicalEvent

ACTIVITY_TYPES = frozenset().union(*(s.counts_as_activity for s in CATALOGUE.values()))
NOT_ALIVE = frozenset({"offline"})


class InactivityState(BaseModel):
    community_id: str = ""
    first_seen: datetime | None = None
    last_activity: datetime | None = None
    last_alive: datetime | None = None
    last_will: datetime | None = None     # newest MQTT last will ("offline") of any device
    home_back_at: datetime | None = None  # the home reported again after being dead
    alive_interval_s: int = 0
    away_seen_at: datetime | None = None
    hour: datetime | None = None          # start of the hour being counted
    hour_active: bool = False
    routine: Routine = Routine()
    alerted: list[str] = []               # alert ids already raised (the last few)


class InactivityDetector:
    name = "inactivity"

    def __init__(self, config: DetectorConfig) -> None:
        self.c = config
        self.tz = ZoneInfo(config.timezone)

    def initial(self) -> InactivityState:
        return InactivityState()

    def on_event(
        self, state: InactivityState, event: CanonicalEvent, profile: ElderProfile,
    ) -> Verdict[InactivityState]:
        t = event.event_time
        update: dict[str, object] = {}
        if state.first_seen is None:
            update["first_seen"] = t
            update["community_id"] = event.community_id
        if event.type in NOT_ALIVE and (state.last_will is None or t > state.last_will):
            update["last_will"] = t
        if event.type not in NOT_ALIVE:
            if state.last_alive is None or t > state.last_alive:
                update["last_alive"] = t
                if state.last_alive is not None and self._dead(state, t):
                    # Activity during the home's outage was lost: count silence from now.
                    update["home_back_at"] = t
            # The home is alive while its chatty devices (hourly heartbeats or more often)
            # report; the slowest of them sets the window, as in the health detector.
            interval = _interval(event, profile)
            current = state.alive_interval_s
            if (current == 0 or (interval <= 3600 and (interval > current or current > 3600))
                    or (current > 3600 and interval < current)):
                update["alive_interval_s"] = interval
        if event.type in ACTIVITY_TYPES:
            if state.last_activity is None or t > state.last_activity:
                update["last_activity"] = t
            if state.hour is not None and t >= state.hour:
                update["hour_active"] = True
        return Verdict(state.model_copy(update=update) if update else state)

    def on_timer(
        self, state: InactivityState, now: datetime, profile: ElderProfile,
    ) -> Verdict[InactivityState]:
        if state.first_seen is None:
            return Verdict(state)
        state = self._roll(state, now, profile)
        if profile.away:
            return Verdict(state.model_copy(update={"away_seen_at": now}))
        if self._dead(state, now):
            return Verdict(state)  # the home is not reporting: not the elder's silence
        start = max(t for t in (state.first_seen, state.last_activity, state.away_seen_at,
                                profile.rearmed_at, state.home_back_at) if t is not None)
        alone = profile.lives_alone
        alerts = [a for a in (self._no_wakeup(state, start, now, profile, alone),
                              self._silence(state, start, now, profile, alone))
                  if a is not None and a.alert_id not in state.alerted]
        if not alerts:
            return Verdict(state)
        alerted = (state.alerted + [a.alert_id for a in alerts])[-4:]
        return Verdict(state.model_copy(update={"alerted": alerted}), alerts[:1])

    def _dead(self, state: InactivityState, now: datetime) -> bool:
        """The home's devices are not reporting (silent too long, or a last will was the last
        word)."""
        return state.last_alive is None or now - state.last_alive > self._alive_window(state) or (
            state.last_will is not None and state.last_will >= state.last_alive)

    def _alive_window(self, state: InactivityState) -> timedelta:
        return timedelta(seconds=self.c.offline_intervals * (state.alive_interval_s or 3600))

    def _roll(self, state: InactivityState, now: datetime, profile: ElderProfile
              ) -> InactivityState:
        """Count every hour that ended before `now` into the routine."""
        current = hour_start(now, self.tz)
        if state.hour is None:
            return state.model_copy(update={"hour": current, "hour_active": False})
        if current <= state.hour:
            return state
        routine, t = state.routine, state.hour
        active = state.hour_active
        alive_window = self._alive_window(state)
        while t < current:
            end = t + timedelta(hours=1)
            alive = state.last_alive is not None and end - state.last_alive <= alive_window
            if not profile.away and (active or alive):
                routine = routine.learn(hour_of_week(t, self.tz), active, self.c.routine_cap)
            t, active = end, False
        return state.model_copy(update={"hour": current, "hour_active": False,
                                        "routine": routine})

    def _alert(self, state: InactivityState, profile: ElderProfile, rule: str, since: datetime,
               now: datetime, severity: Severity, **evidence: object) -> Alert:
        return Alert(
            alert_id=alert_id("inactivity", profile.elder_id, rule, since.isoformat()),
            elder_id=profile.elder_id, community_id=profile.community_id or state.community_id,
            kind="inactivity", severity=severity, event_time=now, detected_at=now,
            evidence=[{"rule": rule, "silent_since": since.isoformat(),
                       "last_activity": state.last_activity.isoformat()
                       if state.last_activity else None,
                       "lives_alone": profile.lives_alone, **evidence}],
        )

    def _no_wakeup(self, state: InactivityState, start: datetime, now: datetime,
                   profile: ElderProfile, alone: bool) -> Alert | None:
        local = now.astimezone(self.tz)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            hours=self.c.day_start_h)
        if local < day_start or start >= day_start:
            return None
        wake = wake_hour(state.routine, local.weekday(), self.c.day_start_h,
                         self.c.routine_prior_weight)
        margin = self.c.wake_margin_alone_h if alone else self.c.wake_margin_h
        # The usual wake-up time staff entered (registry `wake_h`) covers a new elder whose own
        # history does not yet outweigh the generic day; the later of the two wins.
        usual_h = max(wake + 1.0, profile.thresholds.get("wake_h", 0.0))
        deadline = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            hours=usual_h + margin)
        if local < deadline:
            return None
        return self._alert(state, profile, "no_wakeup", day_start, now, Severity.HIGH,
                           usual_wake_hour=wake, entered_wake_h=profile.thresholds.get("wake_h"),
                           margin_h=margin)

    def _silence(self, state: InactivityState, start: datetime, now: datetime,
                 profile: ElderProfile, alone: bool) -> Alert | None:
        min_h = self.c.silence_min_alone_h if alone else self.c.silence_min_h
        if now - start < timedelta(hours=min_h):
            return None
        local = now.astimezone(self.tz)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            hours=self.c.day_start_h)
        if start < day_start <= local:
            return None  # not seen since before today began: the wake-up rule's case
        # Only while the elder is usually up: silence after bedtime is for the wake-up rule.
        if state.routine.probability(hour_of_week(now, self.tz),
                                     self.c.routine_prior_weight) < self.c.awake_p:
            return None
        p, awake_h = silence_probability(state.routine, start, now, self.tz,
                                         self.c.routine_prior_weight, self.c.awake_p)
        limit = self.c.silence_p_alone if alone else self.c.silence_p
        if awake_h < min_h or p >= limit:
            return None
        return self._alert(state, profile, "silence", start, now, Severity.HIGH,
                           probability=round(p, 5), limit=limit)


def _interval(event: CanonicalEvent, profile: ElderProfile) -> int:
    if event.device_id in profile.devices:
        return profile.devices[event.device_id]
    try:
        return CATALOGUE[DeviceKind(event.device_kind)].heartbeat_interval_s
    except ValueError:
        return 3600
