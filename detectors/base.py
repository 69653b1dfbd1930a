"""What a detector is: a small pure function of (state, event or timer) -> (state, alerts).

The engine owns the consumer loop, the per-elder state store and the checkpoint; a detector
only sees one elder's state, the event (or the current event-time watermark for timers) and the
elder's profile. State must be a pydantic model so the engine can persist it as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, Self, TypeVar

from pydantic import BaseModel

from foundation.contracts.alerts import Alert
from foundation.contracts.events import CanonicalEvent

S = TypeVar("S", bound=BaseModel)

_set = object.__setattr__


class State(BaseModel):
    """The base of detector state models. Detectors never change a state in place: they make
    an updated copy with `model_copy(update=...)` for nearly every event, so the copy here is
    the cheap one (pydantic's goes through `copy.copy` three times). Same result: the values
    are taken as given, unvalidated, exactly as pydantic's `model_copy` does."""

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        if deep or self.__pydantic_extra__ is not None \
                or getattr(self, "__pydantic_private__", None) is not None:
            return super().model_copy(update=update, deep=deep)
        cls = type(self)
        new = cls.__new__(cls)
        values = self.__dict__.copy()
        fields_set = self.__pydantic_fields_set__
        if update:
            values.update(update)
            if not fields_set.issuperset(update):
                fields_set = fields_set | update.keys()
        # Shared when unchanged: nothing adds to a state's set (states are never changed in
        # place), and a copy with the same fields set needs no set of its own.
        _set(new, "__dict__", values)
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_fields_set__", fields_set)
        _set(new, "__pydantic_private__", None)
        return new


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


@dataclass(slots=True)  # not frozen: made for every detector an event passes through, and a
class Verdict(Generic[S]):  # frozen dataclass costs twice as much to make (nothing changes one)
    state: S
    alerts: list[Alert] = field(default_factory=list)


class Detector(Protocol[S]):
    """A detector may also have `event_types: frozenset[str]`, the only event types its
    `on_event` looks at (any other event leaves its state as it is); without it, every event
    passes through it. The suite uses it to skip detectors an event cannot concern. Likewise
    `has_timers = False`: its `on_timer` never changes the state nor alerts, and timer sweeps
    skip it. A detector that caches anything per elder outside the states (a cache only: the
    verdicts are the same without it) has `forget(elder_ids: list[str])`, called when those
    elders' states leave this process (`Suite.forget`)."""

    name: str

    def initial(self) -> S: ...

    def on_event(self, state: S, event: CanonicalEvent, profile: ElderProfile) -> Verdict[S]: ...

    def on_timer(self, state: S, now: datetime, profile: ElderProfile) -> Verdict[S]: ...
