"""The simulated clock: real time, or up to thousands of times faster.

Simulated time is epoch seconds. Accelerated runs are placed in the past so that they end at
"now": every device timestamp stays inside ingest's clock window without widening it."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("Asia/Shanghai")


class SimClock:
    """Maps real (monotonic) time to simulated epoch seconds: sim = start + elapsed * speed."""

    def __init__(self, start: float, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> float:
        """The current simulated time, epoch seconds."""
        return self.start + (time.monotonic() - self._origin) * self.speed

    def real_delay(self, sim_t: float) -> float:
        """Real seconds until the simulated time `sim_t` (0 if it is already past)."""
        return max(0.0, (sim_t - self.now()) / self.speed)

    async def sleep_until(self, sim_t: float) -> None:
        delay = self.real_delay(sim_t)
        if delay > 0:
            await asyncio.sleep(delay)


def parse_duration(text: str | float | int) -> float:
    """'90s', '5m', '2h', '3d', '1h30m' or a number of seconds -> seconds."""
    if isinstance(text, int | float):
        return float(text)
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    total, number = 0.0, ""
    for ch in text.strip().replace(" ", ""):
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            raise ValueError(f"bad duration {text!r} (use e.g. 90s, 5m, 2h, 1d12h)")
    if number:
        total += float(number)
    return total


def parse_clock_time(text: str) -> float:
    """'07:30' -> seconds after local midnight."""
    hours, _, minutes = text.partition(":")
    return int(hours) * 3600.0 + int(minutes or 0) * 60.0


def start_in_past(time_of_day: str, span_s: float, now: float | None = None) -> float:
    """Epoch of the latest local `time_of_day` such that the whole span ends before `now`."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, LOCAL).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
    candidate = today + timedelta(seconds=parse_clock_time(time_of_day))
    while candidate.timestamp() + span_s > now:
        candidate -= timedelta(days=1)
    return candidate.timestamp()


def local_midnight(t: float) -> float:
    """Epoch of the local midnight that starts the day containing `t`."""
    d = datetime.fromtimestamp(t, LOCAL)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def start_at_or_after(time_of_day: str, not_before: float) -> float:
    """Epoch of the first local `time_of_day` at or after `not_before`."""
    day = datetime.fromtimestamp(not_before, LOCAL).replace(hour=0, minute=0, second=0,
                                                             microsecond=0)
    candidate = day + timedelta(seconds=parse_clock_time(time_of_day))
    while candidate.timestamp() < not_before:
        candidate += timedelta(days=1)
    return candidate.timestamp()
