"""What a batch of events says about its devices: the registry's `last_seen`, `status` and
`battery`, updated with newer facts only."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
import psycopg

from devices.readings.event_times import earlier, utc

_TOUCH = """
UPDATE devices d SET
    last_seen = GREATEST(d.last_seen, s.last_at),
    status = CASE WHEN d.last_seen IS NULL OR s.last_at >= d.last_seen THEN s.status
                  ELSE d.status END,
    battery = CASE WHEN s.battery IS NOT NULL
                    AND (d.last_seen IS NULL OR s.battery_at >= d.last_seen) THEN s.battery
                   ELSE d.battery END
FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::int[], %s::timestamptz[])
    AS s(id, last_at, status, battery, battery_at)
WHERE d.id = s.id
"""


class DeviceSightings:
    """Per device of a batch: its newest event (time and type) and its newest battery reading,
    for the registry's `last_seen`, `status` and `battery` (the console's device board)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[str, str]] = {}
        self.battery: dict[str, tuple[str, int]] = {}
        self.status_only = 0  # events of the writer's `skip` types (not stored as readings)

    def add(self, device_id: str, at: str, kind: str, data: dict[str, Any]) -> None:
        old = self.last.get(device_id)
        if old is None or not earlier(at, old[0]):
            self.last[device_id] = (at, kind)
        level = data.get("battery")
        if type(level) is int:
            had = self.battery.get(device_id)
            if had is None or not earlier(at, had[0]):
                self.battery[device_id] = (at, level)

    async def apply(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Update the devices, in the caller's transaction (newer facts only)."""
        if not self.last:
            return
        ids = sorted(self.last)  # one lock order for every writer
        batteries = [self.battery.get(d) for d in ids]
        await conn.execute(_TOUCH, (
            ids, [utc(self.last[d][0]) for d in ids],
            ["offline" if self.last[d][1] == "offline" else "online" for d in ids],
            [b[1] if b else None for b in batteries],
            [utc(b[0]) if b else None for b in batteries]))

    @classmethod
    def of_raw(cls, values: Iterable[bytes], skip: frozenset[str]) -> DeviceSightings:
        seen = cls()
        for raw in values:
            try:
                e = orjson.loads(raw)
                seen.add(e["device_id"], e["event_time"], e["type"], e["data"])
                seen.status_only += e["type"] in skip
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not a canonical event: the readings path logs it
        return seen

    @classmethod
    def of_rows(cls, rows: Iterable[tuple[Any, ...]]) -> DeviceSightings:
        seen = cls()
        for r in rows:
            seen.add(r[1], r[0], r[5], json.loads(r[6]))
        return seen
