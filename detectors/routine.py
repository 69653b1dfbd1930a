"""An elder's routine: how likely some activity is in each hour of the week, learned from the
elder's own history and shrunk towards a generic day for a new elder."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

HOURS_PER_WEEK = 168
# A generic older person's day: asleep 23-05, waking around 06, active 07-21.
GENERIC_DAY = [0.05] * 6 + [0.5] + [0.9] * 14 + [0.6, 0.3, 0.1]
WEEK_SHRINK = 2.0  # pseudo-observations pulling an hour-of-week towards the hour of day
AWAKE = 0.5  # an hour with at least this chance of activity is one the elder is usually up


class Routine(BaseModel):
    """Counts per hour of the week (Monday 00:00 local = 0): hours observed, hours active."""

    observed: list[int] = [0] * HOURS_PER_WEEK
    active: list[int] = [0] * HOURS_PER_WEEK

    def learn(self, how: int, was_active: bool, cap: int) -> Routine:
        """Count one observed hour; past `cap` observations both counts are halved."""
        observed, active = list(self.observed), list(self.active)
        observed[how] += 1
        active[how] += int(was_active)
        if observed[how] > cap:
            observed[how] //= 2
            active[how] //= 2
        return Routine(observed=observed, active=active)

    def probability(self, how: int, prior_weight: float) -> float:
        """P(some activity in hour-of-week `how`)."""
        hour = how % 24
        day_obs = sum(self.observed[hour::24])
        day_act = sum(self.active[hour::24])
        p_day = (day_act + prior_weight * GENERIC_DAY[hour]) / (day_obs + prior_weight)
        return (self.active[how] + WEEK_SHRINK * p_day) / (self.observed[how] + WEEK_SHRINK)


def hour_of_week(t: datetime, tz: ZoneInfo) -> int:
    local = t.astimezone(tz)
    return local.weekday() * 24 + local.hour


def hour_start(t: datetime, tz: ZoneInfo) -> datetime:
    local = t.astimezone(tz)
    return local.replace(minute=0, second=0, microsecond=0)


def silence_probability(
    routine: Routine, start: datetime, end: datetime, tz: ZoneInfo, prior_weight: float,
    awake_p: float = AWAKE,
) -> tuple[float, float]:
    """(P(no activity from `start` to `end`), hours of that span the elder is usually up).

    Only hours in which the elder is usually active (P >= 0.5) count: a night's sleep is not
    silence, and hours are taken as independent, which night-time habits would break."""
    p, awake = 1.0, 0.0
    t = start
    while t < end:
        nxt = min(hour_start(t, tz) + timedelta(hours=1), end)
        q = routine.probability(hour_of_week(t, tz), prior_weight)
        if q >= awake_p:
            frac = (nxt - t).total_seconds() / 3600.0
            p *= (1.0 - q) ** frac
            awake += frac
        t = nxt
    return p, awake


def wake_hour(routine: Routine, day_of_week: int, day_start_h: float, prior_weight: float) -> int:
    """The first hour of the day (from `day_start_h`) in which activity is more likely than not."""
    for hour in range(int(day_start_h), 24):
        if routine.probability(day_of_week * 24 + hour, prior_weight) >= AWAKE:
            return hour
    return 12
