"""What a detector is: a small pure function of (state, event or timer) -> (state, alerts).

The engine owns the consumer loop, the per-elder state store and the checkpoint; a detector
only sees one elder's state, the event (or the current event-time watermark for timers) and the
elder's profile. State must be a pydantic model so the engine can persist it as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from foundation.contracts.alerts import Alert
from foundation.contracts.events import CanonicalEvent

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class ElderProfile:
    """What detectors may know of an elder (from the registry)."""

    elder_id: str
    community_id: str
    lives_alone: bool = False
    away: bool = False
    thresholds: dict[str, float] = field(default_factory=dict)
    # Added compatibly for the silence detectors: device id -> heartbeat interval (s) from the
    # registry, and the time silence may be counted from after a platform outage (re-armed).
    devices: dict[str, int] = field(default_factory=dict)
    rearmed_at: datetime | None = None
    # Where the elder lives and may roam (registry `home`, `safe_zone`; WGS-84), if set.
    home: dict[str, Any] | None = None
    safe_zone: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verdict(Generic[S]):
    state: S
    alerts: list[Alert] = field(default_factory=list)


class Detector(Protocol[S]):
    name: str

    def initial(self) -> S: ...

    def on_event(self, state: S, event: CanonicalEvent, profile: ElderProfile) -> Verdict[S]: ...

    def on_timer(self, state: S, now: datetime, profile: ElderProfile) -> Verdict[S]: ...
