"""SOS presses and a device's own fall flag: every press is a critical alert of its own.

The detector only emits; the dispatcher owns the incident (dispatcher/incidents.py): a press
while the ladder runs joins it and shows on its timeline, a press after someone acknowledged
re-alerts them, a press after resolution opens a new incident. Presses within `episode_s` of
each other are numbered as one episode in the evidence ({"episode": first event, "press": n}),
so the console can say "3rd press". Each alert id comes from its own event id: a replay repeats
the ids (the dispatcher ignores them), two presses never share one."""

from __future__ import annotations

from datetime import datetime, timedelta

from detectors.base import ElderProfile, State, Verdict
from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import CanonicalEvent


class EpisodeState(State):
    """The open episode: the first press names it, later presses extend and count it."""

    first_event_id: str | None = None
    last_at: datetime | None = None
    presses: int = 0


class EpisodeDetector:
    """One critical alert per `event_type` message from any device, numbered by episode."""

    has_timers = False  # an episode ends when the next message comes too late for it

    def __init__(self, name: str, kind: str, event_type: str, episode_s: float,
                 severity: Severity = Severity.CRITICAL, every_event: bool = True) -> None:
        """`every_event` False: only an episode's first message alerts (a leak sensor that
        reports "wet" every minute is one leak, not sixty)."""
        self.name = name
        self.kind = kind
        self.event_type = event_type
        self.event_types = frozenset({event_type})
        self.episode = timedelta(seconds=episode_s)
        self.severity = severity
        self.every_event = every_event

    def initial(self) -> EpisodeState:
        return EpisodeState()

    def on_event(
        self, state: EpisodeState, event: CanonicalEvent, profile: ElderProfile,
    ) -> Verdict[EpisodeState]:
        if event.type != self.event_type or event.data.get("state") is False:
            return Verdict(state)
        joins = (state.last_at is not None and state.first_event_id is not None
                 and abs(event.event_time - state.last_at) <= self.episode)
        if joins:
            last = max(state.last_at, event.event_time) if state.last_at else event.event_time
            new = state.model_copy(update={"last_at": last, "presses": state.presses + 1})
            if not self.every_event:
                return Verdict(new)
        else:
            new = EpisodeState(first_event_id=event.event_id, last_at=event.event_time, presses=1)
        alert = Alert(
            alert_id=alert_id(self.kind, event.event_id, event.event_time.isoformat()),
            elder_id=event.elder_id,
            community_id=event.community_id, kind=self.kind, severity=self.severity,
            event_time=event.event_time, detected_at=event.received_at,
            device_id=event.device_id, room=event.room,
            evidence=[event.model_dump(mode="json"), {"lives_alone": profile.lives_alone,
                      "episode": new.first_event_id, "press": new.presses}],
        )
        return Verdict(new, [alert])

    def on_timer(
        self, state: EpisodeState, now: datetime, profile: ElderProfile,
    ) -> Verdict[EpisodeState]:
        return Verdict(state)
