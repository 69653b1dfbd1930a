"""Labelled event streams made by code: simulated daily routines with injected emergencies, and
normal days with traps (a dropped cane, a single blood-pressure misread, a late sleeper, a
holiday away, a long nap). Deterministic for a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from detectors.profiles import ProfileRecord
from foundation.contracts.events import CanonicalEvent

TZ = ZoneInfo("Asia/Shanghai")
# Device id suffix -> (kind, room, heartbeat interval s).
KIT: dict[str, tuple[str, str, int]] = {
    "sos": ("sos_button", "卧室", 3600), "watch": ("smart_watch", "", 600),
    "cane": ("smart_cane", "", 600), "smoke": ("smoke_alarm", "厨房", 3600),
    "bp": ("bp_meter", "客厅", 86400), "glucose": ("glucose_meter", "客厅", 86400),
    "motion1": ("motion_sensor", "客厅", 1800), "motion2": ("motion_sensor", "卧室", 1800),
}
ACTIVITY = frozenset({"motion", "steps", "ok", "bp", "glucose", "door", "accel"})
# (from, to, devices, message types or None for all): what a device does not send meanwhile.
Silence = tuple[datetime, datetime, frozenset[str], frozenset[str] | None]
HOME_DEVICES = ("sos", "smoke", "bp", "glucose", "motion1", "motion2")


@dataclass(frozen=True)
class Label:
    """An emergency injected into the stream: an alert of `kind` is expected from `at` on."""

    elder_id: str
    kind: str
    at: datetime
    name: str
    accept: frozenset[str]        # alert kinds that are true alerts for this label
    window: timedelta = timedelta(hours=6)


@dataclass
class ElderPlan:
    elder_id: str
    lives_alone: bool
    wake_h: float
    sleep_h: float
    checkin_deadline_h: float | None
    injections: dict[int, list[str]] = field(default_factory=dict)  # day index -> names


@dataclass
class Stream:
    events: list[CanonicalEvent]
    labels: list[Label]
    profiles: dict[str, ProfileRecord]
    scored_from: datetime
    scored_days: int
    traps: list[tuple[str, str, datetime]]   # (elder, trap, when): for the report


Samples = list[tuple[float, float, float]]


class FallMotions(Protocol):
    """A cane's accelerometer windows (x, y, z in g per sample), such as `simulators.accel`
    gives: the simulators sit above the detectors, so their caller passes them in."""

    def fall(self, rate_hz: float = ..., seconds: float = ..., seed: int = ...) -> Samples: ...

    def dropped_cane(self, rate_hz: float = ..., seconds: float = ...,
                     seed: int = ...) -> Samples: ...

    def lying(self, rate_hz: float, seconds: float, seed: int = ...) -> Samples: ...

    def walking(self, rate_hz: float, seconds: float, seed: int = ...) -> Samples: ...


class _Day:
    """Builds one elder's events for one local day."""

    def __init__(self, plan: ElderPlan, day: date, rng: random.Random, sink: list[CanonicalEvent],
                 labels: list[Label], silent: list[Silence]):
        self.plan, self.day, self.rng, self.sink, self.labels = plan, day, rng, sink, labels
        self.silent = silent  # (from, to, devices) when devices send nothing
        self.seq = 0
        self.dropped = False  # an injected event was not sent (its device was silent then)

    def at(self, hour: float) -> datetime:
        midnight = datetime(self.day.year, self.day.month, self.day.day, tzinfo=TZ)
        return (midnight + timedelta(hours=hour)).astimezone(UTC)

    def emit(self, dev: str, type_: str, t: datetime, **data: Any) -> None:
        for start, end, devices, types in self.silent:
            if start <= t < end and dev in devices and (types is None or type_ in types):
                self.dropped = True
                return
        self.seq += 1
        kind, room, _ = KIT[dev]
        device_id = f"{self.plan.elder_id}-{dev}"
        self.sink.append(CanonicalEvent(
            event_id=f"{device_id}/{self.day.isoformat()}-{self.seq}",
            elder_id=self.plan.elder_id, community_id="c-eval", device_id=device_id,
            device_kind=kind, room=room or None, type=type_, event_time=t, received_at=t,
            data=data))

    def label(self, kind: str, t: datetime, name: str, accept: set[str] | None = None,
              window_h: float = 6.0) -> None:
        if self.dropped:  # e.g. an SpO2 dip from a watch that had already died: not injected
            return
        self.labels.append(Label(self.plan.elder_id, kind, t, name,
                                 frozenset(accept or {kind}), timedelta(hours=window_h)))


def _heartbeats(d: _Day, phase: dict[str, float]) -> None:
    for dev, (_, _, interval) in KIT.items():
        t = phase[dev]
        while t < 86400:
            d.emit(dev, "heartbeat", d.at(t / 3600), battery=80)
            t += interval


def _routine(d: _Day, inj: list[str], away: bool, stop_at: float | None,
             found_at: float | None = None) -> None:
    """Motion, steps, vitals and the check-in of a normal day, until `stop_at` (a collapse);
    from `found_at` on the day after a collapse (found and helped up)."""
    rng, plan = d.rng, d.plan
    wake = plan.wake_h + rng.gauss(0, 0.25) + (0.75 if "sleep_in" in inj else 0.0)
    if found_at is not None:
        wake = max(wake, found_at)
    sleep = plan.sleep_h + rng.gauss(0, 0.3)
    end = min(sleep, stop_at) if stop_at is not None else sleep
    if away:
        return
    nap = (13.5, 13.5 + (2.5 if "long_nap" in inj else 1.0)) if rng.random() < 0.6 else None
    t = wake
    while t < end:
        if nap is None or not nap[0] <= t < nap[1]:
            d.emit(rng.choice(["motion1", "motion2"]), "motion", d.at(t))
        t += rng.expovariate(1 / 0.15)  # every ~9 minutes
    for h in range(int(wake) + 1, int(end)):
        d.emit("watch", "steps", d.at(h + 0.5), steps=rng.randint(50, 600))
        if h % 2 == 0:
            d.emit("watch", "spo2", d.at(h + 0.2), percent=round(rng.gauss(96.5, 1.0), 1))
        d.emit("watch", "hr", d.at(h + 0.1), bpm=round(rng.gauss(72, 5)))
    if rng.random() < 0.5:
        d.emit("motion2", "motion", d.at(2.5 + rng.random()))  # a night-time bathroom trip
    if stop_at is not None and stop_at < wake + 0.6:
        return
    d.emit("bp", "bp", d.at(wake + 0.5), systolic=round(rng.gauss(135, 7)),
           diastolic=round(rng.gauss(82, 4)), pulse=70)
    d.emit("glucose", "glucose", d.at(wake + 0.55), value=round(rng.gauss(6.3, 0.6), 1))
    if plan.checkin_deadline_h is not None and "skip_checkin" not in inj:
        d.emit("sos", "ok", d.at(wake + rng.uniform(0.2, 0.9)))


def _inject(d: _Day, name: str, accel: FallMotions | None) -> float | None:
    """One injected emergency or trap; returns the collapse hour if the elder collapses.
    Without `accel`, the ones made of a cane's accelerometer windows are left out."""
    rng = d.rng
    d.dropped = False
    h = rng.uniform(10.0, 17.0)
    t = d.at(h)
    if name == "sos":
        for k in range(3):
            d.emit("sos", "sos", t + timedelta(seconds=20 * k))
        d.label("sos", t, name)
    elif name == "fire":
        d.emit("smoke", "smoke", t, state=True)
        d.emit("smoke", "smoke", t + timedelta(seconds=30), state=True)
        d.label("smoke", t, name)
    elif name == "bp_crisis":
        d.emit("bp", "bp", t, systolic=192, diastolic=112, pulse=88)
        d.emit("bp", "bp", t + timedelta(minutes=5), systolic=188, diastolic=118, pulse=90)
        d.label("vital", t, name, window_h=1)
    elif name == "bp_misread":  # trap: one absurd reading, a normal re-test
        d.emit("bp", "bp", t, systolic=201, diastolic=104, pulse=75)
        d.emit("bp", "bp", t + timedelta(minutes=4), systolic=134, diastolic=81, pulse=72)
    elif name == "hypo":
        d.emit("glucose", "glucose", t, value=2.7)
        d.label("vital", t, name, window_h=1)
    elif name == "hypoxia":
        d.emit("watch", "spo2", t, percent=86.0)
        d.emit("watch", "spo2", t + timedelta(minutes=8), percent=87.0)
        d.label("vital", t, name, window_h=1)
    elif name == "fall_flag":
        d.emit("watch", "fall", t, confidence=0.9)
        d.label("fall", t, name)
    elif name in ("fall_accel", "dropped_cane"):
        if accel is None:
            return None
        samples = accel.fall(20.0, seed=rng.randint(0, 9999)) if name == "fall_accel" \
            else accel.dropped_cane(20.0, seed=rng.randint(0, 9999))
        d.emit("cane", "accel", t, rate_hz=20.0, samples=samples)
        if name == "fall_accel":
            d.emit("cane", "accel", t + timedelta(seconds=30), rate_hz=20.0,
                   samples=accel.lying(20.0, 4.0, seed=1))
            d.label("fall", t, name, accept={"fall", "inactivity", "checkin_missed"},
                    window_h=26)
            return h  # on the floor: no more activity today
        d.emit("cane", "accel", t + timedelta(seconds=20), rate_hz=20.0,
               samples=accel.walking(20.0, 4.0, seed=2))
    elif name == "low_battery":
        d.emit("sos", "heartbeat", t, battery=12)
        d.label("low_battery", t, name, window_h=1)
    elif name == "watch_dead":
        d.emit("watch", "offline", t, online=False, reason="last_will")
        d.silent.append((t, t + timedelta(days=60), frozenset({"watch"}), None))
        d.label("device_offline", t, name, window_h=3)
    elif name == "gateway_down":
        end = t + timedelta(hours=4)
        for dev in (*HOME_DEVICES, "watch", "cane"):
            d.emit(dev, "offline", t + timedelta(seconds=90), online=False, reason="last_will")
        d.silent.append((t, end, frozenset(KIT), None))
        d.label("gateway_offline", t, name, window_h=4)
    elif name == "collapse":
        # Found the next day at noon: every alert until then is about this collapse.
        d.label("inactivity", t, name, accept={"inactivity", "checkin_missed"}, window_h=26)
        return h
    elif name == "morning_collapse":  # never gets up
        d.label("inactivity", d.at(d.plan.wake_h), name, accept={"inactivity", "checkin_missed"},
                window_h=30)
        return 0.0
    elif name == "skip_checkin":
        assert d.plan.checkin_deadline_h is not None
        d.label("checkin_missed", d.at(d.plan.checkin_deadline_h), name, window_h=1)
    return None


def plans(n: int, scored_days: int, warmup_days: int, rng: random.Random) -> list[ElderPlan]:
    """`n` elders with their injected emergencies and traps on the scored days."""
    emergencies = ["sos", "fire", "bp_crisis", "hypo", "hypoxia", "fall_flag", "fall_accel",
                   "low_battery", "watch_dead", "gateway_down", "collapse", "morning_collapse",
                   "skip_checkin"]
    traps = ["bp_misread", "dropped_cane", "long_nap", "sleep_in"]
    out = []
    for i in range(n):
        late = i == 1  # the late sleeper
        out.append(ElderPlan(
            f"E-eval-{i + 1:02d}", lives_alone=i % 2 == 0,
            wake_h=10.0 if late else rng.uniform(6.0, 7.5),
            sleep_h=23.5 if late else rng.uniform(20.5, 22.0),
            checkin_deadline_h=(13.0 if late else 11.0) if i % 3 != 2 else None))
    for k, name in enumerate(emergencies * max(1, n // 4)):
        plan = out[(k * 5 + 3) % n]
        if name == "skip_checkin" and plan.checkin_deadline_h is None:
            plan = next(p for p in out if p.checkin_deadline_h is not None)
        day = warmup_days + rng.randrange(scored_days)
        plan.injections.setdefault(day, []).append(name)
    for k, name in enumerate(traps * max(1, n // 3)):
        plan = out[1] if name == "sleep_in" else out[(k * 7 + 2) % n]
        plan.injections.setdefault(warmup_days + rng.randrange(scored_days), []).append(name)
    return out


def generate(elders: int = 12, scored_days: int = 14, warmup_days: int = 21, seed: int = 7,
             start: date = date(2026, 3, 2), accel: FallMotions | None = None) -> Stream:
    """The labelled stream: `warmup_days` of normal life (the routine is learned, nothing is
    scored), then `scored_days` with injections and traps; one holiday away per 4 elders.
    `accel` makes the cane's falls and dropped canes (`simulators.evaluation` passes the
    simulators'); without it those are left out."""
    rng = random.Random(seed)
    events: list[CanonicalEvent] = []
    labels: list[Label] = []
    traps: list[tuple[str, str, datetime]] = []
    profiles: dict[str, ProfileRecord] = {}
    for idx, plan in enumerate(plans(elders, scored_days, warmup_days, rng)):
        profile = ProfileRecord(plan.elder_id, "c-eval", plan.lives_alone,
                                devices={f"{plan.elder_id}-{k}": v[2] for k, v in KIT.items()})
        if plan.checkin_deadline_h is not None:
            profile.thresholds["checkin_deadline_h"] = plan.checkin_deadline_h
        away_days: set[int] = set()
        if idx % 4 == 3:
            first = warmup_days + rng.randrange(max(1, scored_days - 3))
            away_days = {first, first + 1, first + 2}
            s = datetime(*(start + timedelta(days=first)).timetuple()[:3], tzinfo=TZ)
            profile.away.append((s.astimezone(UTC), (s + timedelta(days=3)).astimezone(UTC)))
            traps.append((plan.elder_id, "holiday_away", s.astimezone(UTC)))
        profiles[plan.elder_id] = profile
        phase = {dev: rng.uniform(0, KIT[dev][2]) for dev in KIT}
        silent: list[Silence] = []
        found_at: float | None = None
        for n in range(warmup_days + scored_days):
            d = _Day(plan, start + timedelta(days=n), rng, events, labels, silent)
            inj = plan.injections.get(n, [])
            stop: float | None = None
            found, found_at = found_at, None
            if n in away_days:
                inj = [i for i in inj if i not in ("collapse", "morning_collapse", "skip_checkin")]
            for name in inj:
                collapse_at = _inject(d, name, accel)
                if collapse_at is not None:
                    stop = collapse_at if stop is None else min(stop, collapse_at)
                    # Found the next day at noon: the evening and morning stay silent.
                    silent.append((d.at(collapse_at), d.at(24 + 12), frozenset(KIT), ACTIVITY))
                    found_at = 12.0
                if name in ("bp_misread", "dropped_cane", "long_nap", "sleep_in"):
                    traps.append((plan.elder_id, name, d.at(12)))
            _routine(d, inj, n in away_days, stop, found)
            _heartbeats(d, phase)
    events.sort(key=lambda e: e.event_time)
    scored_from = datetime(*(start + timedelta(days=warmup_days)).timetuple()[:3], tzinfo=TZ)
    return Stream(events, labels, profiles, scored_from.astimezone(UTC), scored_days, traps)
