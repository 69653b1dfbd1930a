"""The detectors the engine runs, in order, and how one elder's state passes through them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from detectors.alarms import AlarmDetector
from detectors.base import Detector, ElderProfile
from detectors.checkin import CheckinDetector
from detectors.config import DetectorConfig
from detectors.episodes import EpisodeDetector
from detectors.falls import FallDetector
from detectors.health import DeviceHealthDetector
from detectors.inactivity import InactivityDetector
from detectors.safezone import SafeZoneDetector
from detectors.vitals import VitalsDetector
from foundation import logs
from foundation.contracts.alerts import Alert, Severity
from foundation.contracts.events import CanonicalEvent

log = logs.get(__name__)

# One elder's state: detector name -> that detector's state model.
ElderState = dict[str, BaseModel]


# The detectors of the priority lane (`kafka.URGENT`, `detectors.service.run`): each looks only at
# events of urgent types, so it sees all of its input there (tests/test_urgent_lane.py checks).
PRIORITY_LANE = frozenset({"sos", "fall_flag", "alarms"})


def priority_lane(config: DetectorConfig | None = None) -> list[Detector[Any]]:
    """The detectors the priority lane runs."""
    return [d for d in build(config) if d.name in PRIORITY_LANE]


def build(config: DetectorConfig | None = None) -> list[Detector[Any]]:
    """Every detector, configured; server-side fall detection joins when its package is there."""
    c = config or DetectorConfig()
    found: list[Detector[Any]] = [
        EpisodeDetector("sos", "sos", "sos", c.sos_episode_s),
        # The device's own fall flag; state key "fall_flag", the alert kind is "fall".
        EpisodeDetector("fall_flag", "fall", "fall", c.sos_episode_s),
        # A leak: staff and family by SMS first (high); one alert per wet episode.
        EpisodeDetector("water_leak", "water_leak", "water_leak", c.alarm_episode_s,
                        Severity.HIGH, every_event=False),
        AlarmDetector(c), VitalsDetector(c), InactivityDetector(c), CheckinDetector(c),
        DeviceHealthDetector(c), FallDetector(c.fall), SafeZoneDetector(),
    ]
    return found


class Suite:
    """Runs every detector over one elder's state (pure: no clock, no I/O)."""

    def __init__(self, detectors: list[Detector[Any]]) -> None:
        self.detectors = detectors
        # One shared initial state per detector: detectors never mutate a state in place, and
        # an elder's state for a detector is stored only once it differs from the initial one.
        self._initial = {d.name: d.initial() for d in detectors}
        self._types = {name: type(s) for name, s in self._initial.items()}
        # Per event type, the detectors whose `on_event` looks at it (see `Detector.event_types`):
        # a heartbeat need not pass through the SOS, alarm and fall detectors.
        self._by_type: dict[str, list[Detector[Any]]] = {}
        self._by_type_off_lane: dict[str, list[Detector[Any]]] = {}
        self._timed = [d for d in detectors if getattr(d, "has_timers", True)]

    def initial(self) -> ElderState:
        return {}

    def on_event(self, state: ElderState, event: CanonicalEvent, profile: ElderProfile,
                 on_lane: bool = False) -> tuple[ElderState, list[Alert], bool]:
        """(new state, alerts, whether the state changed). `on_lane`: the event is on the
        priority lane too, whose detectors (`PRIORITY_LANE`) judge it there, not here."""
        by_type = self._by_type_off_lane if on_lane else self._by_type
        detectors = by_type.get(event.type)
        if detectors is None:
            detectors = by_type[event.type] = [
                d for d in self.detectors if _looks_at(d, event.type)
                and not (on_lane and d.name in PRIORITY_LANE)]
        alerts: list[Alert] = []
        changed = False
        initial = self._initial
        for d in detectors:
            name = d.name
            current = state.get(name)
            if current is None:
                current = initial[name]
            verdict = d.on_event(current, event, profile)
            if verdict.state is not current:
                state[name] = verdict.state
                changed = True
            if verdict.alerts:
                alerts.extend(verdict.alerts)
        return state, alerts, changed

    def on_timer(self, state: ElderState, now: datetime, profile: ElderProfile
                 ) -> tuple[ElderState, list[Alert], bool]:
        """(new state, alerts, whether the state changed) at event time `now`; detectors
        without timers (`has_timers = False`) are skipped."""
        alerts: list[Alert] = []
        changed = False
        initial = self._initial
        for d in self._timed:
            name = d.name
            current = state.get(name)
            if current is None:
                current = initial[name]
            verdict = d.on_timer(current, now, profile)
            if verdict.state is not current:
                state[name] = verdict.state
                changed = True
            if verdict.alerts:
                alerts.extend(verdict.alerts)
        return state, alerts, changed

    def forget(self, elder_ids: Iterable[str]) -> None:
        """These elders' state is no longer held here (a partition was revoked): detectors that
        cache anything per elder (`forget(elder_ids)`) drop it."""
        ids = list(elder_ids)
        for d in self.detectors:
            forget: Callable[[list[str]], None] | None = getattr(d, "forget", None)
            if forget is not None:
                forget(ids)

    def looks_at(self, event_type: str) -> list[str]:
        """The names of the detectors an event of this type passes through."""
        return [d.name for d in self.detectors if _looks_at(d, event_type)]

    def dump_json(self, state: ElderState) -> str:
        """The state as JSON for the store: one object, a member per detector, each serialised
        by pydantic's own (compiled) serialiser; the checkpoint writes thousands a second."""
        return "{" + ",".join(f"{json.dumps(name)}:{s.model_dump_json()}"
                              for name, s in state.items()) + "}"

    def load(self, raw: dict[str, Any]) -> ElderState:
        """State back from the store; a detector whose state no longer parses starts afresh."""
        out: ElderState = {}
        for name, value in raw.items():
            model = self._types.get(name)
            if model is None:
                continue
            try:
                out[name] = model.model_validate(value)
            except ValueError as exc:
                log.error("detector state unreadable, reset", detector=name, error=str(exc))
        return out


def _looks_at(detector: Detector[Any], event_type: str) -> bool:
    types: frozenset[str] | None = getattr(detector, "event_types", None)
    return types is None or event_type in types
