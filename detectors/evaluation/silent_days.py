"""Silent days injected into real homes' logs, replayed through the inactivity detector in event
time (in-process, the same code the engine runs), and scored next to the classic anchors.

The rules (docs/inactivity.md has them for readers):
- Days run from `day_start_h` (04:00 local) to the next. The first `learn` days are for
  learning only; from then on every `every`-th day is made silent, mornings and daytimes in
  turn; every other scored day stays as recorded and counts for false alerts.
- A day's wake-up is its first activity after which the elder stays up (another activity 20
  min or more later, without a 1 h gap: a night-time trip to the toilet is not getting up);
  the home's usual wake-up is the median of the learning days' wake-ups; its usual bedtime
  the median of their last activity before 01:00.
- Morning cut: every activity of the day from its start is removed (the elder never gets up).
  Caught in time: an inactivity alert by the usual wake-up + 2 h.
- Daytime cut: a seeded random activity inside the home (not the front door) between the day's
  wake-up + 1 h and the usual bedtime - 6 h is the elder's last; everything after it is removed.
  Caught in time: an inactivity alert within 6 h of it.
- The home's devices stay alive throughout (a hub heartbeat every 30 minutes), as in a real
  deployment; labelled away periods are registered away periods.
- False alerts: every inactivity alert on the unmodified log after the learning days.
- Anchors on the same data: fixed 12 h and 24 h no-activity timers, and "nothing by the usual
  wake-up + 2 h" (usual wake-up learned from the learning days)."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from detectors.base import ElderProfile
from detectors.config import DetectorConfig
from detectors.evaluation.homes import Home, Reading, to_events
from detectors.inactivity import (
    ENTRANCE,
    InactivityDetector,
    InactivityState,
    activity_weight,
    day_start,
)
from detectors.routine import day_getting_up
from devices.catalogue import DeviceKind
from foundation.contracts.events import CanonicalEvent

TICK = timedelta(minutes=5)
HEARTBEAT = timedelta(minutes=30)
MORNING_MARGIN = timedelta(hours=2)
DAYTIME_WINDOW = timedelta(hours=6)
ANCHORS = ("timer_12h", "timer_24h", "wake_plus_2h")
NOISY = "noisy-pir"  # the stress sensor: fires all night, whatever the elder does


@dataclass
class Outcome:
    day: str
    cut: str                 # "morning" or "daytime"
    silent_from: datetime    # the cut (daytime) or the usual wake-up (morning)
    deadline: datetime
    caught_at: dict[str, datetime | None] = field(default_factory=dict)  # by detector


@dataclass
class HomeResult:
    name: str
    days: int
    scored_days: int
    usual_wake_h: float
    outcomes: list[Outcome]
    false_alerts: dict[str, int]
    skipped: list[str]

    def row(self) -> dict[str, Any]:
        return {"home": self.name, "days": self.days, "scored_days": self.scored_days,
                "usual_wake_h": round(self.usual_wake_h, 2),
                "lie_in_days": self.false_alerts["lie_in_days"],
                "eldercare_false_on_lie_ins": self.false_alerts["eldercare_on_lie_ins"],
                **{k: _tally(self.outcomes, k, self.false_alerts[k], self.scored_days)
                   for k in ("eldercare", *ANCHORS)},
                "skipped": self.skipped}


def _tally(outcomes: list[Outcome], who: str, false: int, scored_days: int) -> dict[str, Any]:
    def caught(cut: str) -> list[float]:
        return [(o.caught_at[who] - o.silent_from).total_seconds() / 3600  # type: ignore[operator]
                for o in outcomes if o.cut == cut and o.caught_at.get(who) is not None]
    mornings, daytime = caught("morning"), caught("daytime")
    delays = mornings + daytime
    return {
        "mornings": [len(mornings), sum(o.cut == "morning" for o in outcomes)],
        "daytime": [len(daytime), sum(o.cut == "daytime" for o in outcomes)],
        "median_delay_h": round(statistics.median(delays), 2) if delays else None,
        "max_delay_h": round(max(delays), 2) if delays else None,
        "false_alerts": false,
        "false_per_elder_month": round(false / (scored_days / 30), 2) if scored_days else None,
    }


class HomeReplay:
    """One home replayed through the inactivity detector, ticking timers every 5 minutes."""

    def __init__(self, home: Home, config: DetectorConfig) -> None:
        self.c = config
        self.tz = ZoneInfo(config.timezone)
        self.detector = InactivityDetector(config)
        self.home = home
        self.events = to_events(home, self.tz)
        self.elder = f"home-{home.name}"
        self.away = [(a.replace(tzinfo=self.tz), b.replace(tzinfo=self.tz))
                     for a, b in home.away]
        self.activity = [e for e in self.events if activity_weight(e) > 0]
        # What the elder did (the truth the cuts and the usual wake-up are made from).
        self.elder_activity = [e for e in self.activity if not e.device_id.endswith(NOISY)]

    def profile(self, t: datetime) -> ElderProfile:
        away = any(a <= t < b for a, b in self.away)
        return ElderProfile(self.elder, "homes", lives_alone=True, away=away)

    def heartbeat(self, t: datetime) -> CanonicalEvent:
        return CanonicalEvent(
            event_id=f"{self.elder}-hub/{t.timestamp()}", elder_id=self.elder,
            community_id="homes", device_id=f"{self.elder}-hub", device_kind="motion_sensor",
            type="heartbeat", event_time=t, received_at=t, data={}, source="replay")

    def run(self, state: InactivityState, events: list[CanonicalEvent], start: datetime,
            end: datetime, stop_after: datetime | None = None,
            keep: frozenset[datetime] = frozenset()
            ) -> tuple[InactivityState, list[datetime], dict[datetime, InactivityState]]:
        """Replay `events` (sorted) from `start` to `end` with heartbeats and timer ticks:
        (final state, alert times, the states at the ticks in `keep`); stops at the first
        alert at or after `stop_after` if given."""
        alerts: list[datetime] = []
        ticks: dict[datetime, InactivityState] = {}
        beat, tick = start, start
        i = 0
        while tick <= end:
            while i < len(events) and events[i].event_time < tick:
                e = events[i]
                while beat <= e.event_time:
                    state = self.detector.on_event(state, self.heartbeat(beat),
                                                   self.profile(beat)).state
                    beat += HEARTBEAT
                state = self.detector.on_event(state, e, self.profile(e.event_time)).state
                i += 1
            while beat <= tick:
                state = self.detector.on_event(state, self.heartbeat(beat),
                                               self.profile(beat)).state
                beat += HEARTBEAT
            verdict = self.detector.on_timer(state, tick, self.profile(tick))
            state = verdict.state
            if tick in keep:
                ticks[tick] = state
            if verdict.alerts:
                alerts.append(tick)
                if stop_after is not None and tick >= stop_after:
                    break
            tick += TICK
        return state, alerts, ticks


def evaluate_home(home: Home, config: DetectorConfig | None = None, learn: int = 7,
                  every: int = 4, seed: int = 7) -> HomeResult:
    """Inject silent days into one home and score the detector and the anchors."""
    c = config or DetectorConfig()
    r = HomeReplay(home, c)
    tz = r.tz
    if not r.elder_activity:
        raise ValueError(f"home {home.name}: no activity in the log")
    first = day_start(r.elder_activity[0].event_time, tz, c.day_start_h)
    last = r.elder_activity[-1].event_time
    n_days = int((last - first) / timedelta(days=1)) + 1
    starts = [first + timedelta(days=d) for d in range(n_days + 1)]
    by_day: list[list[CanonicalEvent]] = [[] for _ in range(n_days)]
    for e in r.elder_activity:
        d = int((e.event_time - first) / timedelta(days=1))
        if 0 <= d < n_days:
            by_day[d].append(e)
    wakes = [w for d, day in enumerate(by_day[:learn])
             if (w := day_getting_up([_hours(e.event_time, starts[d], c) for e in day]))
             is not None]
    if not wakes:
        raise ValueError(f"home {home.name}: no activity in the {learn} learning days")
    usual_wake = statistics.median(wakes)
    beds = []
    for d, day in enumerate(by_day[:learn]):
        before = [e for e in day if e.event_time < starts[d + 1] - timedelta(hours=3)]
        if before:
            beds.append(_hours(before[-1].event_time, starts[d], c))
    usual_bed = statistics.median(beds) if beds else 22.0 - c.day_start_h

    # The unmodified log, with the state at the start of every day kept for the cuts.
    end = starts[n_days]
    _, alerts, ticks = r.run(r.detector.initial(), r.events, starts[0], end,
                             keep=frozenset(starts))
    scored_from = starts[min(learn, n_days)]
    scored_days = max(0, n_days - learn)
    false = {"eldercare": sum(a >= scored_from for a in alerts)}
    false.update(_anchor_false(r, by_day, starts, learn, usual_wake, c))
    # Lie-ins: recorded days whose first activity came after the usual wake-up + 2 h. Up to
    # that deadline they are event for event a silent morning, so any detector that catches
    # every silent morning by then alerts on them too.
    times = [e.event_time for e in r.activity]
    lie_ins = [d for d in range(learn, n_days)
               if not any(starts[d] <= t < starts[d] + timedelta(hours=usual_wake)
                          + MORNING_MARGIN for t in times)
               and not any(a <= starts[d] + timedelta(hours=usual_wake) < b for a, b in r.away)]
    false["lie_in_days"] = len(lie_ins)
    false["eldercare_on_lie_ins"] = sum(
        1 for a in alerts if a >= scored_from
        and any(starts[d] <= a < starts[d] + timedelta(hours=12) for d in lie_ins))

    rng = random.Random(f"{seed}/{home.name}")
    outcomes, skipped = [], []
    for k, d in enumerate(range(learn, n_days, every)):
        cut_kind = "morning" if k % 2 == 0 else "daytime"
        day = by_day[d]
        midnight = starts[d] - timedelta(hours=c.day_start_h)
        if not day or any(a <= starts[d] + timedelta(hours=12) < b for a, b in r.away):
            skipped.append(f"{starts[d].date()} (away or no activity)")
            continue
        if cut_kind == "morning":
            cut = starts[d]
            silent_from = midnight + timedelta(hours=c.day_start_h + usual_wake)
            deadline = silent_from + MORNING_MARGIN
        else:
            lo = day[0].event_time + timedelta(hours=1)
            hi = max(lo + timedelta(hours=1),
                     starts[d] + timedelta(hours=usual_bed) - DAYTIME_WINDOW)
            inside = [e for e in day if lo <= e.event_time <= hi and e.device_kind != ENTRANCE]
            if not inside:
                skipped.append(f"{starts[d].date()} (no daytime activity inside)")
                continue
            cut = rng.choice(inside).event_time + timedelta(seconds=1)
            silent_from, deadline = cut, cut + DAYTIME_WINDOW
        outcome = Outcome(str(starts[d].date()), cut_kind, silent_from, deadline)
        tick0 = starts[d]
        kept = [e for e in r.events if tick0 <= e.event_time
                and (e.event_time < cut or e.device_id.endswith(NOISY))]
        _, hits, _ = r.run(ticks[tick0], kept, tick0 + TICK, deadline, stop_after=cut)
        hit = next((h for h in hits if h >= cut), None)
        outcome.caught_at["eldercare"] = hit if hit is not None and hit <= deadline else None
        seen = [e.event_time for e in r.activity
                if e.event_time < cut or (e.device_id.endswith(NOISY) and e.event_time <= deadline)]
        last_seen = seen[-1] if seen else cut
        for hours, name in ((12, "timer_12h"), (24, "timer_24h")):
            at = last_seen + timedelta(hours=hours)
            outcome.caught_at[name] = at if cut <= at <= deadline else None
        wake_deadline = midnight + timedelta(hours=c.day_start_h + usual_wake) + MORNING_MARGIN
        fooled = any(starts[d] <= t < wake_deadline for t in seen)
        outcome.caught_at["wake_plus_2h"] = (
            wake_deadline if cut <= starts[d] and wake_deadline <= deadline and not fooled
            else None)
        outcomes.append(outcome)
    return HomeResult(home.name, n_days, scored_days, usual_wake + c.day_start_h, outcomes,
                      false, skipped)


def _hours(t: datetime, day_start: datetime, c: DetectorConfig) -> float:
    """Hours after the day's start (so 07:30 is 3.5 with days starting at 04:00)."""
    return (t - day_start).total_seconds() / 3600


def _anchor_false(r: HomeReplay, by_day: list[list[CanonicalEvent]], starts: list[datetime],
                  learn: int, usual_wake: float, c: DetectorConfig) -> dict[str, int]:
    """The anchors' alerts on the unmodified log after the learning days."""
    scored_from, end = starts[min(learn, len(by_day))], starts[len(by_day)]
    times = [e.event_time for e in r.activity]
    out = {}
    for hours, name in ((12, "timer_12h"), (24, "timer_24h")):
        limit = timedelta(hours=hours)
        out[name] = sum(1 for a, b in zip(times, [*times[1:], end], strict=True)
                        if b - a >= limit and scored_from <= a + limit <= end)
    out["wake_plus_2h"] = sum(
        1 for d in range(learn, len(by_day))
        if not any(starts[d] <= t < starts[d] + timedelta(hours=usual_wake) + MORNING_MARGIN
                   for t in times))
    return out


def add_noisy_sensor(home: Home, until_h: float = 6.0) -> Home:
    """Stress: a motion sensor that fires every 5 minutes from midnight to `until_h` every
    night (a pet, a draught, a fault), whatever the elder does."""
    first, last = home.readings[0].time, home.readings[-1].time
    t = first.replace(hour=0, minute=0, second=0, microsecond=0)
    noise = []
    while t <= last:
        if t.hour + t.minute / 60 < until_h:
            noise.append(Reading(t, NOISY, "", DeviceKind.MOTION_SENSOR.value, "on"))
        t += timedelta(minutes=5)
    return Home(home.name, sorted([*home.readings, *noise], key=lambda r: r.time), home.away)


def evaluate_homes(homes: list[Home], config: DetectorConfig | None = None, learn: int = 7,
                   every: int = 4, seed: int = 7, noisy_night: bool = False) -> dict[str, Any]:
    """Every home, and the totals."""
    if noisy_night:
        homes = [add_noisy_sensor(h) for h in homes]
    results = [evaluate_home(h, config, learn, every, seed) for h in homes]
    outcomes = [o for res in results for o in res.outcomes]
    scored = sum(res.scored_days for res in results)
    total = {"home": "total", "days": sum(res.days for res in results), "scored_days": scored,
             "lie_in_days": sum(res.false_alerts["lie_in_days"] for res in results),
             "eldercare_false_on_lie_ins": sum(res.false_alerts["eldercare_on_lie_ins"]
                                               for res in results),
             **{k: _tally(outcomes, k, sum(res.false_alerts[k] for res in results), scored)
                for k in ("eldercare", *ANCHORS)}}
    return {"homes": [res.row() for res in results], "total": total,
            "rules": {"learn_days": learn, "every": every, "seed": seed,
                      "noisy_night": noisy_night}}


def format_report(result: dict[str, Any]) -> str:
    """The results as Markdown tables: one row per home and detector."""
    lines = [f"learning days {result['rules']['learn_days']}, every "
             f"{result['rules']['every']}th day after them silent (mornings and daytime in "
             f"turn), seed {result['rules']['seed']}"
             + (", a motion sensor firing every night 00-06" if result["rules"]["noisy_night"]
                else ""), "",
             "| home | detector | silent mornings caught by wake-up + 2 h | daytime caught "
             "within 6 h | median delay | false alerts | per elder-month | scored days |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in [*result["homes"], result["total"]]:
        for who in ("eldercare", *ANCHORS):
            s = row[who]
            delay = "-" if s["median_delay_h"] is None else f"{s['median_delay_h']:.1f} h"
            per = "-" if s["false_per_elder_month"] is None else f"{s['false_per_elder_month']}"
            lines.append(f"| {row['home']} | {who} | {s['mornings'][0]} / {s['mornings'][1]} "
                         f"| {s['daytime'][0]} / {s['daytime'][1]} | {delay} | "
                         f"{s['false_alerts']} | {per} | {row['scored_days']} |")
    lines += ["", "Lie-ins (recorded days with nothing by the usual wake-up + 2 h: any detector "
              "that catches every silent morning by then alerts on them): "
              + ", ".join(f"{row['home']} {row['lie_in_days']} (eldercare alerted "
                          f"{row['eldercare_false_on_lie_ins']})"
                          for row in [*result["homes"], result["total"]])]
    skipped = [f"{row['home']}: {s}" for row in result["homes"] for s in row["skipped"]]
    if skipped:
        lines += ["", "skipped days: " + "; ".join(skipped)]
    return "\n".join(lines)
