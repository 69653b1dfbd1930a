"""`ReadingsWriter`: stores batches of canonical events on one PostgreSQL connection, with COPY,
idempotently (a replayed batch inserts nothing and adds nothing to the rollups)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from prometheus_client import Counter

from devices.readings import partitions
from devices.readings.device_status import DeviceSightings
from devices.readings.rollups import HourlyRollups
from devices.readings.rows import COLUMNS, NotClean, direct_copy, row_of
from foundation import logs
from foundation.deadletter import Rejection
from foundation.faults import describe

log = logs.get(__name__)

STORED = Counter("eldercare_store_readings_total", "Readings written (new rows)")
REPLAYED = Counter("eldercare_store_duplicates_total", "Readings already stored (replays)")
UNREADABLE = Counter("eldercare_store_unreadable_total", "Records on the events topic that are"
                     " not canonical events (logged with their offset, skipped)")
STATUS_ONLY = Counter("eldercare_store_status_only_total", "Events kept only as device status"
                      " (heartbeats when ELDERCARE_READINGS_STORE_HEARTBEATS=false)")

_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS readings_stage (event_time timestamptz,"
          " device_id text, msg_id text, elder_id text, community_id text, type text,"
          " data jsonb, received_at timestamptz) ON COMMIT DELETE ROWS")
_COPY = f"COPY readings_stage ({', '.join(COLUMNS)}) FROM STDIN"
# The fast path: records are copied as they came from Kafka and PostgreSQL takes them apart.
_STAGE_RAW = "CREATE TEMP TABLE IF NOT EXISTS readings_raw (e jsonb) ON COMMIT DELETE ROWS"
_COPY_RAW = "COPY readings_raw (e) FROM STDIN"
_RAW_DAYS = "SELECT DISTINCT ((e->>'event_time')::timestamptz AT TIME ZONE 'UTC')::date" \
    " FROM readings_raw"
_FROM_RAW = """
SELECT (e->>'event_time')::timestamptz, e->>'device_id',
       CASE WHEN starts_with(e->>'event_id', (e->>'device_id') || '/')
            THEN substr(e->>'event_id', length(e->>'device_id') + 2) ELSE e->>'event_id' END,
       e->>'elder_id', e->>'community_id', e->>'type', e->'data',
       (e->>'received_at')::timestamptz
FROM readings_raw WHERE NOT (e->>'type' = ANY(%(skip)s))
"""
_MOVE = """
WITH fresh AS (
    INSERT INTO readings {source} ON CONFLICT DO NOTHING
    RETURNING event_time, device_id, elder_id, type, data
), counted AS (
    SELECT date_trunc('hour', event_time, 'UTC') AS hour, device_id, elder_id, type,
           '' AS field, count(*) AS n, NULL::float8 AS sum, NULL::float8 AS min,
           NULL::float8 AS max
    FROM fresh GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT date_trunc('hour', f.event_time, 'UTC'), f.device_id, f.elder_id, f.type, kv.key,
           count(*), sum(kv.value::float8), min(kv.value::float8), max(kv.value::float8)
    FROM fresh f, jsonb_each(f.data) kv WHERE jsonb_typeof(kv.value) = 'number'
    GROUP BY 1, 2, 3, 4, 5
), rolled AS (
    INSERT INTO readings_hourly AS r (hour, device_id, elder_id, type, field, n, sum, min, max)
    SELECT * FROM counted ORDER BY device_id, type, hour, field
    ON CONFLICT (device_id, type, hour, field) DO UPDATE SET
        n = r.n + EXCLUDED.n, sum = r.sum + EXCLUDED.sum,
        min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max)
)
SELECT count(*) FROM fresh
"""


_COPY_READINGS = f"COPY readings ({', '.join(COLUMNS)}) FROM STDIN"
_STAGE_ROLLUP = ("CREATE TEMP TABLE IF NOT EXISTS readings_hourly_stage (hour timestamptz,"
                 " device_id text, elder_id text, type text, field text, n bigint,"
                 " sum float8, min float8, max float8) ON COMMIT DELETE ROWS")
_COPY_ROLLUP = "COPY readings_hourly_stage FROM STDIN"
_ROLLUP = """
INSERT INTO readings_hourly AS r (hour, device_id, elder_id, type, field, n, sum, min, max)
SELECT * FROM readings_hourly_stage ORDER BY device_id, type, hour, field
ON CONFLICT (device_id, type, hour, field) DO UPDATE SET
    n = r.n + EXCLUDED.n, sum = r.sum + EXCLUDED.sum,
    min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max)
"""
_CHUNK = 500  # events decoded between two yields to the event loop (COPY keeps streaming)


class ReadingsWriter:
    """Stores batches of readings rows on one connection; idempotent."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], timescale: bool,
                 skip: frozenset[str] = frozenset()) -> None:
        self.conn = conn
        self.timescale = timescale
        # Event types that only update the device's status (no readings row, no rollup).
        self.skip = skip
        self._days: set[date] = set()
        # After a batch with rows already stored (a replay), batches go through the staging
        # table with ON CONFLICT until one is all new: replays come in runs.
        self._replaying = False
        self._offered = 0  # rows offered to the database by the last write
        # Records set aside (not canonical events, or refused by the database), with why:
        # `store_batch` dead-letters them before committing the offsets.
        self.rejected: list[tuple[bytes, Rejection]] = []

    @classmethod
    async def connect(cls, url: str, skip: frozenset[str] = frozenset()) -> ReadingsWriter:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await conn.execute("SET TIME ZONE 'UTC'")
        await conn.execute(_STAGE)
        await conn.execute(_STAGE_RAW)
        await conn.execute(_STAGE_ROLLUP)
        writer = cls(conn, await partitions.has_timescale(conn), skip)
        if not writer.timescale:
            writer._days = await partitions.existing(conn)
        return writer

    async def _partitions_for(self, rows: Sequence[tuple[Any, ...]]) -> None:
        days = {datetime.fromisoformat(r[0]).astimezone(UTC).date() for r in rows}
        if days - self._days:
            await partitions.ensure(self.conn, days - self._days)
            self._days |= days

    async def write(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Store rows (see `row_of`) in one transaction; returns how many were new."""
        if not rows:
            return 0
        kept = [r for r in rows if r[5] not in self.skip]
        if not self.timescale:
            await self._partitions_for(kept)
        async with self.conn.transaction():
            async with self.conn.cursor().copy(_COPY) as copy:
                for row in kept:
                    await copy.write_row(row)
            found = await (await self.conn.execute(
                _MOVE.format(source="SELECT * FROM readings_stage"))).fetchone()
            await DeviceSightings.of_rows(rows).apply(self.conn)
        return self._counted(len(kept), found, len(rows) - len(kept))

    async def write_raw(self, values: Sequence[bytes]) -> int:
        """Store canonical events as JSON bytes; returns how many were new.

        The direct path decodes them here (orjson), COPYs the rows straight into `readings` and
        adds the batch's rollups in one upsert, all in one transaction: the key rejects the
        whole transaction when any row is already stored, so it writes all or nothing. Then,
        and for records that are not plain canonical events, the staging path: PostgreSQL takes
        the events apart and inserts with ON CONFLICT DO NOTHING, adding only new rows to the
        rollups; when any record is not a canonical event, it falls back to `write`, which
        skips and logs the bad ones."""
        if not values:
            return 0
        if not self._replaying:
            try:
                return await self._write_direct(values)
            except NotClean:
                pass
            except psycopg.errors.UniqueViolation:
                self._replaying = True
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
                pass
        new = await self._write_staged(values)
        if new == self._offered:
            self._replaying = False
        return new

    async def _write_direct(self, values: Sequence[bytes]) -> int:
        for attempt in range(2):
            rollups, seen = HourlyRollups(), DeviceSightings()
            try:
                async with self.conn.transaction():
                    async with self.conn.cursor().copy(_COPY_READINGS) as copy:
                        # Decoded a chunk at a time: PostgreSQL parses the rows already sent
                        # meanwhile, and the other writers get their turn.
                        for i in range(0, len(values), _CHUNK):
                            await copy.write(direct_copy(values[i:i + _CHUNK], rollups,
                                                          seen, self.skip))
                            await asyncio.sleep(0)
                    async with self.conn.cursor().copy(_COPY_ROLLUP) as copy:
                        for rollup in rollups.rows():
                            await copy.write_row(rollup)
                    await self.conn.execute(_ROLLUP)
                    await seen.apply(self.conn)
            except psycopg.errors.CheckViolation:  # no partition for some day yet
                if attempt or self.timescale:
                    raise
                await partitions.ensure(self.conn, rollups.days)
                self._days |= rollups.days
                continue
            kept = len(values) - seen.status_only
            return self._counted(kept, (kept,), seen.status_only)
        raise AssertionError("unreachable")

    async def _write_staged(self, values: Sequence[bytes]) -> int:
        try:
            return await self._write_raw(values)
        except psycopg.errors.CheckViolation:  # no partition for some day yet: make it, retry
            async with self.conn.transaction():
                await self._copy_raw(values)
                days = {r[0] for r in await (await self.conn.execute(_RAW_DAYS)).fetchall()}
            await partitions.ensure(self.conn, days)
            return await self._write_raw(values)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
            log.warning("batch has records that are not canonical events; storing row by row")
            return await self._write_readable(values)

    async def _write_readable(self, values: Sequence[bytes]) -> int:
        """The records that are canonical events, together; the others are set aside in
        `rejected`. If the database refuses the lot, one by one: only the refused are set
        aside, so one bad record never blocks the batch (nor the partition) behind it."""
        rows, raws = [], []
        for v in values:
            try:
                rows.append(row_of(v))
                raws.append(v)
            except (ValueError, KeyError, TypeError) as exc:
                UNREADABLE.inc()
                log.error("unreadable event set aside", error=str(exc)[:300])
                self.rejected.append((v, Rejection("unreadable_event", str(exc))))
        try:
            return await self.write(rows)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError, ValueError):
            pass
        new = 0
        for row, raw in zip(rows, raws, strict=True):
            try:
                new += await self.write([row])
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError,
                    ValueError) as exc:  # e.g. a time that is not one
                UNREADABLE.inc()
                log.error("event the database refuses set aside", error=str(exc)[:300])
                self.rejected.append((raw, Rejection("unstorable_event", describe(exc))))
        return new

    async def _copy_raw(self, values: Sequence[bytes]) -> None:
        async with self.conn.cursor().copy(_COPY_RAW) as copy:
            # COPY text format: in compact JSON only backslashes (and stray newlines) need it.
            await copy.write(b"".join(
                v.replace(b"\\", b"\\\\").replace(b"\n", b"\\n") + b"\n" for v in values))

    async def _write_raw(self, values: Sequence[bytes]) -> int:
        async with self.conn.transaction():
            await self._copy_raw(values)
            found = await (await self.conn.execute(_MOVE.format(source=_FROM_RAW),
                                                   {"skip": sorted(self.skip)})).fetchone()
            seen = DeviceSightings.of_raw(values, self.skip)
            await seen.apply(self.conn)
        return self._counted(len(values) - seen.status_only, found, seen.status_only)

    def _counted(self, total: int, found: tuple[Any, ...] | None, status_only: int = 0) -> int:
        """`total` rows offered, of which `found` new; `status_only` events were not stored."""
        self._offered = total
        new = int(found[0]) if found else 0
        STORED.inc(new)
        REPLAYED.inc(total - new)
        STATUS_ONLY.inc(status_only)
        return new

    async def close(self) -> None:
        await self.conn.close()
