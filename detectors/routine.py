"""An elder's routine, as much as inactivity needs of it: when the elder is usually up (the
chance of some activity in each hour of the day), the usual wake-up hour, and the longest
silence of an ordinary day. Starts from a generic older person's day and follows the elder's
own days within a few days (the last two weeks count, older days fade)."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from detectors.base import State

# A generic older person's day: asleep 23-05, waking around 06, active 07-21.
GENERIC_DAY = [0.05] * 6 + [0.5] + [0.9] * 14 + [0.6, 0.3, 0.1]
GENERIC_WAKE_H = 7.0      # local hour of the first activity of a generic day
GENERIC_LONGEST_GAP_H = 2.0  # the longest daytime silence of a generic day
PRIOR_DAYS = 2.0          # the generic day counts as this many observed days
DAYS_KEPT = 14            # wake-ups and longest silences remembered
UP_FOR_H = 1 / 3   # up for 20 minutes: the elder got up (not a night-time trip to the toilet)
BACK_TO_BED_H = 1.0  # ...unless the next sign of life is this much later
AWAKE = 0.5  # an hour with at least this chance of activity is one the elder is usually up


class Routine(State):
    """Counts per hour of the day (local), plus the last `DAYS_KEPT` days' wake-up hours and
    longest daytime silences (hours)."""

    day_observed: list[int] = [0] * 24
    day_active: list[int] = [0] * 24
    wakes: list[float] = []
    longest_gaps: list[float] = []

    def learn(self, hour: int, was_active: bool, cap: int) -> Routine:
        """Count one observed hour of the day; past `cap` observations both counts are halved,
        so the last weeks outweigh older ones."""
        observed, active = list(self.day_observed), list(self.day_active)
        observed[hour] += 1
        active[hour] += int(was_active)
        if observed[hour] > cap:
            observed[hour] //= 2
            active[hour] //= 2
        return self.model_copy(update={"day_observed": observed, "day_active": active})

    def learn_day(self, wake_h: float | None, longest_gap_h: float | None) -> Routine:
        """Remember one finished day (None: not observed, e.g. away that morning)."""
        wakes, gaps = self.wakes, self.longest_gaps
        if wake_h is not None:
            wakes = [*wakes, round(wake_h, 3)][-DAYS_KEPT:]
        if longest_gap_h is not None:
            gaps = [*gaps, round(longest_gap_h, 3)][-DAYS_KEPT:]
        return self.model_copy(update={"wakes": wakes, "longest_gaps": gaps})

    def probability(self, hour: int, prior_weight: float = PRIOR_DAYS) -> float:
        """P(some activity in this local hour of the day)."""
        h = hour % 24
        return (self.day_active[h] + prior_weight * GENERIC_DAY[h]) / (
            self.day_observed[h] + prior_weight)

    def usual_wake(self, prior_h: float = GENERIC_WAKE_H) -> float:
        """The usual wake-up hour: the median of the days seen, the prior counting as two days
        until four of the elder's own are known."""
        prior = [prior_h] * int(PRIOR_DAYS) if len(self.wakes) < 4 else []
        return statistics.median(self.wakes + prior)

    def longest_gap(self) -> float:
        """The longest silence of an ordinary day (hours): the second longest of the days
        remembered (one odd day does not count), shrunk towards the generic day early on."""
        gaps = sorted(self.longest_gaps + [GENERIC_LONGEST_GAP_H] * int(PRIOR_DAYS))
        return gaps[-2]


def getting_up(candidate: float | None, last: float | None, t: float
               ) -> tuple[float | None, bool]:
    """One step of finding the day's getting-up time from its activities (hours): the first
    activity that the elder stays up after (another one 20 min later without a 1 h gap).
    Returns (candidate, confirmed)."""
    if candidate is None or last is None or t - last > BACK_TO_BED_H:
        return t, False
    return candidate, t - candidate >= UP_FOR_H


def day_getting_up(hours: list[float]) -> float | None:
    """The getting-up time of a day's activities (sorted hours), or its first activity if the
    elder never stayed up."""
    candidate, last = None, None
    for t in hours:
        candidate, up = getting_up(candidate, last, t)
        if up:
            return candidate
        last = t
    return hours[0] if hours else None


def hour_start(t: datetime, tz: ZoneInfo) -> datetime:
    local = t.astimezone(tz)
    return local.replace(minute=0, second=0, microsecond=0)


def awake_hours(routine: Routine, start: datetime, end: datetime, tz: ZoneInfo,
                awake_p: float = AWAKE, prior_weight: float = PRIOR_DAYS) -> float:
    """Hours between `start` and `end` that fall in hours the elder is usually up: a night's
    sleep is not silence."""
    awake = 0.0
    t = start
    while t < end:
        nxt = min(hour_start(t, tz) + timedelta(hours=1), end)
        if routine.probability(t.astimezone(tz).hour, prior_weight) >= awake_p:
            awake += (nxt - t).total_seconds() / 3600.0
        t = nxt
    return awake
