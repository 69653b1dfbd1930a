"""Inactivity: silence that is improbable for this elder at this time of day.

Two rules on the learned routine (`detectors.routine`): nothing since the night by the usual
wake-up hour plus a margin (`no_wakeup`), and a daytime silence longer than the elder's own
ordinary longest silence (`silence`). Never while the elder is away: registered away periods,
and absence inferred from the front door (the door, then nothing inside: the elder went out,
until something moves inside again). Only while the home's devices are alive: a silent home
with dead devices is the device-health detector's gateway-offline alert instead."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from detectors.base import ElderProfile, State, Verdict
from detectors.config import DetectorConfig
from detectors.health import catalogue_interval
from detectors.routine import Routine, awake_hours, getting_up, hour_start
from devices.catalogue import CATALOGUE, DeviceKind
from foundation.contracts.alerts import Alert, Severity, alert_id
from foundation.contracts.events import CanonicalEvent

WEIGHTS: dict[str, dict[str, float]] = {
    s.kind.value: {t: s.activity_weight for t in s.counts_as_activity}
    for s in CATALOGUE.values()}
ACTIVITY_TYPES = frozenset().union(*(s.counts_as_activity for s in CATALOGUE.values()))
NOT_ALIVE = frozenset({"offline"})
ENTRANCE = DeviceKind.DOOR_CONTACT.value
WEARABLES = frozenset({DeviceKind.SMART_WATCH.value, DeviceKind.SMART_CANE.value})
NIGHT_HOURS = 4  # 00:00-04:00 local: nearly everyone is asleep
RESTLESS_HOURS = 3  # a device firing in this many of them fired all night
RESTLESS_CONFIRM_MIN = 5.0
NIGHT_TRIP_BEFORE_WAKE_H = 1.0  # activity this long before the usual wake-up is a night trip
PLUG_ON_W = 5.0  # above a plug's standby draw: the appliance was switched on


@functools.lru_cache(maxsize=4096)  # a timer sweep asks it of one instant for every elder
def day_start(t: datetime, tz: ZoneInfo, day_start_h: float) -> datetime:
    """When the day of `t` began: the latest local `day_start_h` o'clock at or before it."""
    local = t.astimezone(tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        hours=day_start_h)
    return start if local >= start else start - timedelta(days=1)


@functools.cache  # asked for every event, of a few distinct intervals
def _window(intervals: float, interval_s: int) -> timedelta:
    return timedelta(seconds=intervals * interval_s)


def activity_weight(event: CanonicalEvent) -> float:
    """How much this event says "someone is up" (0: not activity)."""
    weight = WEIGHTS.get(event.device_kind, {}).get(event.type)
    if weight is None:
        # An unregistered kind: its activity types still count, as the catalogue has them.
        return 1.0 if event.type in ACTIVITY_TYPES else 0.0
    if event.type == "power" and float(event.data.get("watts", 0.0)) < PLUG_ON_W:
        return 0.0
    if event.type == "water" and float(event.data.get("flow", 0.0)) <= 0.0:
        return 0.0
    return weight


class InactivityState(State):
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
    # Going out: the newest front-door event and the newest activity inside after it.
    last_door: datetime | None = None
    last_inside: datetime | None = None
    door_return: bool = False             # that door ended an absence: the elder came in
    # Weak evidence (a plug, a tap): one is remembered until a second device confirms it.
    weak_at: datetime | None = None
    weak_device: str = ""
    last_strong: datetime | None = None   # newest activity that needed no confirmation
    last_strong_device: str = ""
    # A sensor that fired through the night (a pet, a draught, a fault) is weak evidence the
    # next day: deep-night hours (00-04) with its events, as a bit mask per device tonight,
    # and the devices found restless last night.
    night_hours: dict[str, int] = {}
    restless: list[str] = []
    # The day being observed (local date of its `day_start_h`): its first activity (local
    # hour) and its longest silence so far while the elder was usually up (hours).
    day: str | None = None
    day_first_h: float | None = None      # first activity since the day started
    day_up_h: float | None = None         # the getting-up time (candidate until confirmed)
    day_up: bool = False                  # confirmed: the elder stayed up
    day_longest_gap_h: float = 0.0
    day_out: bool = False                 # away (registered) or out at its start: not learned


class InactivityDetector:
    name = "inactivity"

    def __init__(self, config: DetectorConfig) -> None:
        self.c = config
        self.tz = ZoneInfo(config.timezone)
        # The day last asked about, [start, end) in UTC, and its local start and date: events
        # come in time order and a sweep asks of one instant for every elder.
        self._day: tuple[datetime, datetime, datetime, str] | None = None
        # Per elder, the state a timer last left unchanged and until when sweeps of it change
        # nothing (see `_quiet_until`): a sweep of an elder with no news costs a lookup.
        self._quiet: dict[str, _Quiet] = {}

    def initial(self) -> InactivityState:
        return InactivityState()

    # --- events -----------------------------------------------------------------------------

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
        weight = activity_weight(event)
        if weight > 0:
            self._night(state, event, update)
            if event.device_id in state.restless:
                weight = self._restless_weight(state, event)
            elif not self._confirmed(state, event, weight, update):
                weight = 0.0
            elif weight >= 1.0:
                update.update(last_strong=t, last_strong_device=event.device_id)
        if weight > 0 and (state.last_activity is None or t > state.last_activity):
            self._activity(state, event, profile, update)
        return Verdict(state.model_copy(update=update) if update else state)

    def _restless_weight(self, state: InactivityState, event: CanonicalEvent) -> float:
        """A device that fired all last night counts only right after another device saw
        someone (minutes, not the weak window: it fires often enough to chain along)."""
        strong = state.last_strong
        near = timedelta(minutes=RESTLESS_CONFIRM_MIN)
        if (strong is not None and state.last_strong_device != event.device_id
                and timedelta(0) <= event.event_time - strong <= near):
            return 1.0
        return 0.0

    def _confirmed(self, state: InactivityState, event: CanonicalEvent, weight: float,
                   update: dict[str, object]) -> bool:
        """Weak evidence counts once a second device confirms it within the window."""
        if weight >= 1.0:
            return True
        t = event.event_time
        window = timedelta(minutes=self.c.weak_window_min)
        if (state.weak_at is not None and state.weak_device != event.device_id
                and abs(t - state.weak_at) <= window):
            return True
        if state.last_strong is not None and abs(t - state.last_strong) <= window:
            return True  # someone was just up: the kettle is theirs
        update.update(weak_at=t, weak_device=event.device_id)
        return False

    def _night(self, state: InactivityState, event: CanonicalEvent,
               update: dict[str, object]) -> None:
        """Note the deep-night hour (00-04 local) in which this device fired."""
        local = event.event_time.astimezone(self.tz)
        if local.hour >= NIGHT_HOURS:
            return
        nights = update.get("night_hours", state.night_hours)
        assert isinstance(nights, dict)
        mask = nights.get(event.device_id, 0) | (1 << local.hour)
        if mask != nights.get(event.device_id):
            update["night_hours"] = {**nights, event.device_id: mask}

    def _activity(self, state: InactivityState, event: CanonicalEvent, profile: ElderProfile,
                  update: dict[str, object]) -> None:
        t = event.event_time
        _, _, day_start, day = self._day_window(t)
        if state.day != day and update.get("first_seen") is None and state.first_seen is not None:
            state = self._roll_day(state, t, profile, update)
        update["last_activity"] = t
        if state.hour is not None and t >= state.hour:
            update["hour_active"] = True
        if event.device_kind == ENTRANCE:
            # Opening and shutting the door on the way in are one return.
            same_passage = (state.last_door is not None and state.door_return
                            and t - state.last_door <= timedelta(seconds=self.c.out_trailing_s))
            update.update(last_door=t, door_return=self._out(state, t) or same_passage)
        elif event.device_kind not in WEARABLES:
            update["last_inside"] = t  # a watch or cane shows the elder is alive, not where
        if state.day != day:
            return  # the first day: seen from its middle only
        # The day's getting-up time and its longest silence while the elder is usually up.
        last = state.last_activity
        hour = (t - day_start).total_seconds() / 3600 + self.c.day_start_h
        if not state.day_up:
            last_h = None
            if last is not None and last >= day_start:
                last_h = (last - day_start).total_seconds() / 3600 + self.c.day_start_h
            cand, up = getting_up(state.day_up_h, last_h, hour)
            update.update(day_up_h=cand, day_up=up)
        if state.day_first_h is None:
            update["day_first_h"] = hour
        elif last is not None:
            since = max(last, day_start)
            # Cheap test first: awake hours never exceed the clock's.
            if (t - since).total_seconds() / 3600 > state.day_longest_gap_h \
                    and not self._out(state, t):
                gap = awake_hours(state.routine, since, t, self.tz, self.c.awake_p,
                                  self.c.routine_prior_weight)
                if gap > state.day_longest_gap_h:
                    update["day_longest_gap_h"] = gap

    # --- days and hours -----------------------------------------------------------------------

    def _day_window(self, t: datetime) -> tuple[datetime, datetime, datetime, str]:
        """(start, end) in UTC of the day of `t`, its local start and its local date."""
        window = self._day
        if window is not None and window[0] <= t < window[1]:
            return window
        start = day_start(t, self.tz, self.c.day_start_h)
        # The next day starts 23-25 hours later (daylight saving), the one after 46 or more.
        end = day_start(start + timedelta(hours=30), self.tz, self.c.day_start_h)
        window = self._day = (start.astimezone(UTC), end.astimezone(UTC), start,
                              start.date().isoformat())
        return window

    def _day_start(self, t: datetime) -> datetime:
        return self._day_window(t)[2]

    def _day_of(self, t: datetime) -> str:
        return self._day_window(t)[3]

    def _roll_day(self, state: InactivityState, t: datetime, profile: ElderProfile,
                  update: dict[str, object]) -> InactivityState:
        """On the first event or timer of a new day, learn the day that ended."""
        day = self._day_of(t)
        if state.day == day:
            return state
        routine = state.routine
        if state.day is not None and not state.day_out:
            # A first day seen from its start only; a day with an absence is no ordinary day.
            up = state.day_up_h if state.day_up_h is not None else state.day_first_h
            routine = routine.learn_day(up, state.day_longest_gap_h
                                        if state.day_first_h is not None else None)
        out = profile.away or self._out(state, t)
        if state.first_seen is not None and state.first_seen > self._day_start(t):
            out = True  # seen first today: today's wake-up is unknown
        restless = sorted(d for d, mask in state.night_hours.items()
                          if bin(mask).count("1") >= RESTLESS_HOURS)
        fields: dict[str, object] = {
            "day": day, "night_hours": {}, "restless": restless, "day_first_h": None,
            "day_up_h": None, "day_up": False, "day_longest_gap_h": 0.0, "day_out": out,
            "routine": routine}
        update.update(fields)
        return state.model_copy(update=fields)

    def _roll(self, state: InactivityState, now: datetime, profile: ElderProfile
              ) -> InactivityState:
        """Count every hour that ended before `now` into the routine; start a new day."""
        update: dict[str, object] = {}
        state = self._roll_day(state, now, profile, update)
        if profile.away and not state.day_out:
            state = state.model_copy(update={"day_out": True})
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
            home = not (profile.away or (self._out(state, end) and not active))
            if home and (active or alive):
                routine = routine.learn(t.astimezone(self.tz).hour, active, self.c.routine_cap)
            t, active = end, False
        return state.model_copy(update={"hour": current, "hour_active": False,
                                        "routine": routine})

    # --- timers -------------------------------------------------------------------------------

    def on_timer(
        self, state: InactivityState, now: datetime, profile: ElderProfile,
    ) -> Verdict[InactivityState]:
        if state.first_seen is None:
            return Verdict(state)
        quiet = self._quiet.get(profile.elder_id)
        if (quiet is not None and quiet.state is state and quiet.since <= now < quiet.until
                and not profile.away and _same_for_timers(quiet.profile, profile)):
            return Verdict(state)  # nothing can have changed since the last sweep
        state = self._roll(state, now, profile)
        if profile.away:
            return Verdict(state.model_copy(update={"away_seen_at": now}))
        # The next hour to count, or the next day, changes the state (`_roll`).
        assert state.hour is not None  # set by `_roll`
        next_roll = min(state.hour + timedelta(hours=1), self._day_window(now)[1])
        if self._dead(state, now) or self._out(state, now):
            # The home is not reporting, or the elder went out: both last until an event.
            return self._quiet_until(state, now, next_roll, profile)
        start = max(t for t in (state.first_seen, state.last_activity, state.away_seen_at,
                                profile.rearmed_at, state.home_back_at) if t is not None)
        alone = profile.lives_alone
        not_up = self._not_up(state, profile, now)
        wakeup, wakeup_at = self._no_wakeup(state, start, now, profile, alone, not_up)
        silence, silence_at = self._silence(state, start, now, profile, alone, not_up)
        alerts = [a for a in (wakeup, silence)
                  if a is not None and a.alert_id not in state.alerted]
        if not alerts:
            # An alert already raised stays raised (its id is fixed for the day).
            return self._quiet_until(state, now, min(
                t for t in (next_roll, wakeup_at, silence_at) if t is not None), profile)
        alerted = (state.alerted + [a.alert_id for a in alerts])[-4:]
        return Verdict(state.model_copy(update={"alerted": alerted}), alerts[:1])

    def forget(self, elder_ids: list[str]) -> None:
        """Drop what is remembered of these elders (their state is no longer held here)."""
        for elder_id in elder_ids:
            self._quiet.pop(elder_id, None)

    def _quiet_until(self, state: InactivityState, now: datetime, until: datetime,
                     profile: ElderProfile) -> Verdict[InactivityState]:
        """No alert now, and a sweep of this very state from `now` until `until` (with the same
        profile) would change nothing: no hour ends, no rule's time comes, being out or the
        home's silence only last. Remembered outside the state: a cache, never persisted."""
        self._quiet[profile.elder_id] = _Quiet(state, now, until, profile)
        return Verdict(state)

    def _out(self, state: InactivityState, now: datetime) -> bool:
        """Gone out: the front door was the last sign of life (nothing inside since, beyond the
        hallway sensor catching the elder on the way out), long enough ago."""
        door = state.last_door
        if door is None or now - door < timedelta(minutes=self.c.out_confirm_min):
            return False
        # On the way in, any movement after the door means the elder is home.
        trailing = timedelta(seconds=0 if state.door_return else self.c.out_trailing_s)
        return state.last_inside is None or state.last_inside <= door + trailing

    def _dead(self, state: InactivityState, now: datetime) -> bool:
        """The home's devices are not reporting (silent too long, or a last will was the last
        word)."""
        return state.last_alive is None or now - state.last_alive > self._alive_window(state) or (
            state.last_will is not None and state.last_will >= state.last_alive)

    def _alive_window(self, state: InactivityState) -> timedelta:
        return _window(self.c.offline_intervals, state.alive_interval_s or 3600)

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

    def usual_wake_h(self, state: InactivityState, profile: ElderProfile) -> float:
        """The usual wake-up hour: learned, but never before the one staff entered."""
        entered = profile.thresholds.get("wake_h")
        learned = state.routine.usual_wake(entered if entered is not None else self.c.wake_h)
        return max(learned, entered) if entered is not None else learned

    def _no_wakeup(self, state: InactivityState, start: datetime, now: datetime,
                   profile: ElderProfile, alone: bool, not_up: bool
                   ) -> tuple[Alert | None, datetime | None]:
        """(the alert, or when it could fire at the earliest if still today, else None)."""
        day_start = self._day_start(now)
        if start >= day_start and not not_up:
            return None, None
        resets = [t for t in (state.first_seen, state.away_seen_at, profile.rearmed_at,
                              state.home_back_at) if t is not None]
        if resets and max(resets) >= day_start:
            return None, None  # counting restarted today (back from away, after an outage)
        wake = self.usual_wake_h(state, profile)
        margin = self.c.wake_margin_alone_h if alone else self.c.wake_margin_h
        midnight = day_start - timedelta(hours=self.c.day_start_h)
        fires_at = midnight + timedelta(hours=wake + margin)
        if now < fires_at:
            return None, fires_at
        return self._alert(state, profile, "no_wakeup", day_start, now, Severity.HIGH,
                           usual_wake_hour=round(wake, 2),
                           entered_wake_h=profile.thresholds.get("wake_h"),
                           margin_h=margin), None

    def _not_up(self, state: InactivityState, profile: ElderProfile, now: datetime) -> bool:
        """Not up yet today: nothing since the day began, or only a night-time trip (well
        before the usual wake-up, and the elder did not stay up)."""
        last = state.last_activity
        day_start = self._day_start(now)
        if last is None:  # never active: counting from when the home was first heard today
            return state.first_seen is None or state.first_seen < day_start
        if last < day_start:
            return True
        if state.day_up and state.day == day_start.date().isoformat():
            return False
        wake = self.usual_wake_h(state, profile)
        midnight = day_start - timedelta(hours=self.c.day_start_h)
        return last < midnight + timedelta(hours=wake - NIGHT_TRIP_BEFORE_WAKE_H)

    def silence_limit_h(self, state: InactivityState, alone: bool) -> float:
        """How long a daytime silence may last: longer than this elder's ordinary longest one
        (with room to spare), within the configured floor and ceiling."""
        floor = self.c.silence_min_alone_h if alone else self.c.silence_min_h
        learned = (state.routine.longest_gap() * self.c.silence_gap_factor
                   + self.c.silence_gap_extra_h)
        return min(self.c.silence_max_h, max(floor, learned))

    def _silence(self, state: InactivityState, start: datetime, now: datetime,
                 profile: ElderProfile, alone: bool, not_up: bool
                 ) -> tuple[Alert | None, datetime | None]:
        """(the alert, or the earliest it could fire if still today, else None)."""
        if start < self._day_start(now) or not_up:
            return None, None  # not up yet today: the wake-up rule's case
        limit = self.silence_limit_h(state, alone)
        if now - start < timedelta(hours=limit):
            return None, start + timedelta(hours=limit)
        awake_h = awake_hours(state.routine, start, now, self.tz, self.c.awake_p,
                              self.c.routine_prior_weight)
        if awake_h < limit:
            # Awake hours grow at most as fast as the clock: not before the rest has passed.
            return None, now + timedelta(hours=limit - awake_h) - timedelta(milliseconds=1)
        return self._alert(state, profile, "silence", start, now, Severity.HIGH,
                           awake_silent_h=round(awake_h, 2), limit_h=round(limit, 2)), None


@dataclass(frozen=True, slots=True)
class _Quiet:
    state: InactivityState
    since: datetime
    until: datetime
    profile: ElderProfile


def _same_for_timers(a: ElderProfile, b: ElderProfile) -> bool:
    """Whether the timers' verdicts are the same for both profiles (`away` aside)."""
    return a is b or (a.lives_alone == b.lives_alone and a.rearmed_at == b.rearmed_at
                      and a.thresholds.get("wake_h") == b.thresholds.get("wake_h"))


def _interval(event: CanonicalEvent, profile: ElderProfile) -> int:
    if event.device_id in profile.devices:
        return profile.devices[event.device_id]
    return catalogue_interval(event.device_kind)
