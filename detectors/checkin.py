"""Daily check-in: an elder enrolled with a deadline who has not pressed "I'm OK" by it today
gets a wellbeing check (medium: staff or family look in, nobody is called an ambulance)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from detectors.base import ElderProfile, Verdict
from detectors.config import DetectorConfig
from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import CanonicalEvent


class CheckinState(BaseModel):
    community_id: str = ""
    first_seen: datetime | None = None
    last_ok: datetime | None = None
    alerted_day: str | None = None


class CheckinDetector:
    name = "checkin"

    def __init__(self, config: DetectorConfig) -> None:
        self.c = config
        self.tz = ZoneInfo(config.timezone)

    def initial(self) -> CheckinState:
        return CheckinState()

    def on_event(
        self, state: CheckinState, event: CanonicalEvent, profile: ElderProfile,
    ) -> Verdict[CheckinState]:
        update: dict[str, object] = {}
        if state.first_seen is None:
            update.update(first_seen=event.event_time, community_id=event.community_id)
        if event.type == "ok" and (state.last_ok is None or event.event_time > state.last_ok):
            update["last_ok"] = event.event_time
        return Verdict(state.model_copy(update=update) if update else state)

    def on_timer(
        self, state: CheckinState, now: datetime, profile: ElderProfile,
    ) -> Verdict[CheckinState]:
        deadline_h = profile.thresholds.get("checkin_deadline_h",
                                            self.c.checkin_default_deadline_h)
        if deadline_h is None or state.first_seen is None or profile.away:
            return Verdict(state)
        local = now.astimezone(self.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        day = midnight.date().isoformat()
        deadline = midnight + timedelta(hours=float(deadline_h))
        day_start = midnight + timedelta(hours=self.c.day_start_h)
        if (local < deadline or state.alerted_day == day or state.first_seen > deadline
                or (profile.rearmed_at is not None and now < profile.rearmed_at)
                or (state.last_ok is not None and state.last_ok >= day_start)):
            return Verdict(state)
        alert = Alert(
            alert_id=alert_id("checkin_missed", profile.elder_id, day),
            elder_id=profile.elder_id, community_id=profile.community_id or state.community_id,
            kind="checkin_missed", severity=Severity.MEDIUM, event_time=deadline,
            detected_at=now,
            evidence=[{"deadline": deadline.isoformat(), "last_ok":
                       state.last_ok.isoformat() if state.last_ok else None,
                       "lives_alone": profile.lives_alone}],
        )
        return Verdict(state.model_copy(update={"alerted_day": day}), [alert])
