"""Kafka -> PostgreSQL: every canonical event into the readings table, in batches.

One batch, in order: COPY the rows into a per-connection staging table; in the same
transaction move them into `readings` with ON CONFLICT DO NOTHING (the key is device, message
id, event time) and add only the rows really inserted to the hourly rollups; commit; then
commit the Kafka offsets. A crash anywhere before the offset commit replays the batch, which then
inserts nothing and adds nothing to the rollups: no row is lost and none is counted twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import Counter, Histogram

from devices.readings import partitions
from eldercare import kafka, logs
from eldercare.config import Settings

log = logs.get(__name__)

GROUP = "eldercare-store"
STORED = Counter("eldercare_store_readings_total", "Readings written (new rows)")
REPLAYED = Counter("eldercare_store_duplicates_total", "Readings already stored (replays)")
UNREADABLE = Counter("eldercare_store_unreadable_total", "Records on the events topic that are"
                     " not canonical events (logged with their offset, skipped)")
BATCH_SECONDS = Histogram("eldercare_store_batch_seconds", "Time to store one batch")

COLUMNS = ("event_time", "device_id", "msg_id", "elder_id", "community_id", "type", "data",
           "received_at")
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
FROM readings_raw
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


def row_of(raw: bytes) -> tuple[Any, ...]:
    """The readings row of one canonical event as ingest wrote it (JSON)."""
    e = json.loads(raw)
    device_id = e["device_id"]
    prefix = device_id + "/"
    event_id: str = e["event_id"]
    msg_id = event_id[len(prefix):] if event_id.startswith(prefix) else event_id
    return (e["event_time"], device_id, msg_id, e["elder_id"], e["community_id"], e["type"],
            json.dumps(e["data"], ensure_ascii=False), e["received_at"])


class ReadingsWriter:
    """Stores batches of readings rows on one connection; idempotent."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], timescale: bool) -> None:
        self.conn = conn
        self.timescale = timescale
        self._days: set[date] = set()

    @classmethod
    async def connect(cls, url: str) -> ReadingsWriter:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await conn.execute("SET TIME ZONE 'UTC'")
        await conn.execute(_STAGE)
        await conn.execute(_STAGE_RAW)
        writer = cls(conn, await partitions.has_timescale(conn))
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
        if not self.timescale:
            await self._partitions_for(rows)
        async with self.conn.transaction():
            async with self.conn.cursor().copy(_COPY) as copy:
                for row in rows:
                    await copy.write_row(row)
            found = await (await self.conn.execute(
                _MOVE.format(source="SELECT * FROM readings_stage"))).fetchone()
        return self._counted(len(rows), found)

    async def write_raw(self, values: Sequence[bytes]) -> int:
        """Store canonical events as JSON bytes, taken apart by PostgreSQL (3x less Python per
        event); when any of them is not a canonical event, falls back to `write`, which skips
        and logs the bad ones. Returns how many were new."""
        if not values:
            return 0
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
            return await self.write(rows_of(_Value(v) for v in values))

    async def _copy_raw(self, values: Sequence[bytes]) -> None:
        async with self.conn.cursor().copy(_COPY_RAW) as copy:
            # COPY text format: in compact JSON only backslashes (and stray newlines) need it.
            await copy.write(b"".join(
                v.replace(b"\\", b"\\\\").replace(b"\n", b"\\n") + b"\n" for v in values))

    async def _write_raw(self, values: Sequence[bytes]) -> int:
        async with self.conn.transaction():
            await self._copy_raw(values)
            found = await (await self.conn.execute(_MOVE.format(source=_FROM_RAW))).fetchone()
        return self._counted(len(values), found)

    @staticmethod
    def _counted(total: int, found: tuple[Any, ...] | None) -> int:
        new = int(found[0]) if found else 0
        STORED.inc(new)
        REPLAYED.inc(total - new)
        return new

    async def close(self) -> None:
        await self.conn.close()


class _Value:
    partition = -1
    offset = -1

    def __init__(self, value: bytes) -> None:
        self.value = value


def rows_of(records: Iterable[Any]) -> list[tuple[Any, ...]]:
    """Rows of Kafka records; a record that is not a canonical event is logged and skipped."""
    rows = []
    for rec in records:
        try:
            rows.append(row_of(rec.value))
        except (ValueError, KeyError, TypeError) as exc:
            UNREADABLE.inc()
            log.error("unreadable event skipped", partition=rec.partition, offset=rec.offset,
                      error=str(exc))
    return rows


def consumer(settings: Settings, group: str = GROUP, topic: str = kafka.EVENTS) -> AIOKafkaConsumer:
    """The group consumer of the events topic (batch size is set per `getmany`)."""
    return kafka.consumer(settings, group, topic)


async def store_batch(
    writers: Sequence[ReadingsWriter], consumer_: AIOKafkaConsumer,
    batch: dict[TopicPartition, list[Any]],
) -> int:
    """Write one fetched batch to the database, then commit its offsets. With several writers
    the Kafka partitions are shared among them and written at once: a partition holds whole
    elders, so no two writers touch the same rollup rows."""
    shares: list[list[bytes]] = [[] for _ in writers]
    for tp, recs in batch.items():
        shares[tp.partition % len(writers)].extend(r.value for r in recs)
    counts = await asyncio.gather(*(w.write_raw(v) for w, v in zip(writers, shares,
                                                                    strict=True) if v))
    try:
        await consumer_.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
    except CommitFailedError as exc:  # a rebalance: the batch is replayed, harmlessly
        log.warning("offset commit failed; batch will be replayed", error=str(exc))
    return sum(counts)


async def connect_writers(url: str, n: int) -> list[ReadingsWriter]:
    """`n` writers, each on its own connection (PostgreSQL uses one core per connection)."""
    return [await ReadingsWriter.connect(url) for _ in range(n)]


async def run(settings: Settings, stop: asyncio.Event, group: str = GROUP,
              batch_size: int = 5000, topic: str = kafka.EVENTS, parallel: int = 2) -> None:
    """The `store` service: consume the events topic until `stop` is set."""
    await partitions.maintain(settings.database_url, settings.readings_retention_days,
                              settings.readings_days_ahead)
    writers = await connect_writers(settings.database_url, parallel)
    c = consumer(settings, group, topic)
    await c.start()
    from eldercare import observability  # /readyz: consuming now

    observability.mark_subscribed("events")
    maintained = time.monotonic()
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=200, max_records=batch_size)
            if batch:
                with BATCH_SECONDS.time():
                    await store_batch(writers, c, batch)
            if time.monotonic() - maintained > 3600:
                await partitions.maintain(settings.database_url,
                                          settings.readings_retention_days,
                                          settings.readings_days_ahead)
                maintained = time.monotonic()
    finally:
        await c.stop()
        for w in writers:
            await w.close()
