"""The hourly rollups of a batch of readings (`readings_hourly`), added up in Python."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from devices.readings.event_times import utc


class HourlyRollups:
    """The hourly rollups of a batch, added up in Python: per (hour, device, elder, type) a count
    (field '') and per top-level numeric field of `data` count, sum, min and max; the same rows
    the SQL of `copy_writer._MOVE` makes from the rows it inserted."""

    def __init__(self) -> None:
        self.counts: dict[tuple[datetime, str, str, str], int] = {}
        self.fields: dict[tuple[datetime, str, str, str, str], list[Any]] = {}
        self.days: set[date] = set()
        self._hours: dict[str, datetime] = {}

    def hour_of(self, at: str) -> datetime:
        """The UTC hour of an event time (a time without offset is UTC, as in the session).
        Times in UTC (`YYYY-MM-DDTHH...+00:00` or `...Z`) share the hour of their first 13
        characters, so one is parsed per hour; the COPY rejects any that is not a time."""
        in_utc = at.endswith(("+00:00", "Z")) and len(at) > 13 and at[10] in "T "
        if in_utc and (hour := self._hours.get(at[:13])) is not None:
            return hour
        hour = utc(at).replace(minute=0, second=0, microsecond=0)
        self.days.add(hour.date())
        if in_utc:
            self._hours[at[:13]] = hour
        return hour

    def rows(self) -> Iterable[tuple[Any, ...]]:
        """Rows of `readings_hourly`."""
        for (h, d, e, t), n in self.counts.items():
            yield h, d, e, t, "", n, None, None, None
        for (h, d, e, t, f), a in self.fields.items():
            yield h, d, e, t, f, a[0], float(a[1]), float(a[2]), float(a[3])
