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

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import Counter, Histogram

from devices.readings import partitions
from foundation import kafka, logs
from foundation.config import Settings
from foundation.deadletter import Rejection, dead_letter
from foundation.faults import describe

log = logs.get(__name__)

GROUP = "eldercare-store"
STORED = Counter("eldercare_store_readings_total", "Readings written (new rows)")
REPLAYED = Counter("eldercare_store_duplicates_total", "Readings already stored (replays)")
UNREADABLE = Counter("eldercare_store_unreadable_total", "Records on the events topic that are"
                     " not canonical events (logged with their offset, skipped)")
STATUS_ONLY = Counter("eldercare_store_status_only_total", "Events kept only as device status"
                      " (heartbeats when ELDERCARE_READINGS_STORE_HEARTBEATS=false)")
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


class _NotClean(Exception):
    """A record the direct path does not take (not a plain canonical event)."""


def _utc(at: str) -> datetime:
    t = datetime.fromisoformat(at)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _earlier(a: str, b: str) -> bool:
    """Whether event time `a` is before `b`. Two UTC times written alike (ingest writes them all
    the same way) compare as text; anything else is parsed."""
    if len(a) == len(b) and a[-1] == b[-1] == "Z":
        return a < b
    return _utc(a) < _utc(b)


class _Rollups:
    """The hourly rollups of a batch, added up in Python: per (hour, device, elder, type) a count
    (field '') and per top-level numeric field of `data` count, sum, min and max; the same rows
    the SQL of `_MOVE` makes from the rows it inserted."""

    def __init__(self) -> None:
        self.counts: dict[tuple[datetime, str, str, str], int] = {}
        self.fields: dict[tuple[datetime, str, str, str, str], list[Any]] = {}
        self.days: set[date] = set()
        self._hours: dict[str, datetime] = {}

    def hour_of(self, at: str) -> datetime:
        """The UTC hour of an event time (a time without offset is UTC, as in the session).
        Times in UTC (`YYYY-MM-DDTHH...+00:00` or `...Z`) share the hour of their first 13
        characters, so one is parsed per hour; the COPY rejects any that is not a time."""
        utc = at.endswith(("+00:00", "Z")) and len(at) > 13 and at[10] in "T "
        if utc and (hour := self._hours.get(at[:13])) is not None:
            return hour
        hour = _utc(at).replace(minute=0, second=0, microsecond=0)
        self.days.add(hour.date())
        if utc:
            self._hours[at[:13]] = hour
        return hour

    def rows(self) -> Iterable[tuple[Any, ...]]:
        """Rows of `readings_hourly`."""
        for (h, d, e, t), n in self.counts.items():
            yield h, d, e, t, "", n, None, None, None
        for (h, d, e, t, f), a in self.fields.items():
            yield h, d, e, t, f, a[0], float(a[1]), float(a[2]), float(a[3])


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


class _Seen:
    """Per device of a batch: its newest event (time and type) and its newest battery reading,
    for the registry's `last_seen`, `status` and `battery` (the console's device board)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[str, str]] = {}
        self.battery: dict[str, tuple[str, int]] = {}
        self.status_only = 0  # events of the writer's `skip` types (not stored as readings)

    def add(self, device_id: str, at: str, kind: str, data: dict[str, Any]) -> None:
        old = self.last.get(device_id)
        if old is None or not _earlier(at, old[0]):
            self.last[device_id] = (at, kind)
        level = data.get("battery")
        if type(level) is int:
            had = self.battery.get(device_id)
            if had is None or not _earlier(at, had[0]):
                self.battery[device_id] = (at, level)

    async def apply(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Update the devices, in the caller's transaction (newer facts only)."""
        if not self.last:
            return
        ids = sorted(self.last)  # one lock order for every writer
        batteries = [self.battery.get(d) for d in ids]
        await conn.execute(_TOUCH, (
            ids, [_utc(self.last[d][0]) for d in ids],
            ["offline" if self.last[d][1] == "offline" else "online" for d in ids],
            [b[1] if b else None for b in batteries],
            [_utc(b[0]) if b else None for b in batteries]))

    @classmethod
    def of_raw(cls, values: Iterable[bytes], skip: frozenset[str]) -> _Seen:
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
    def of_rows(cls, rows: Iterable[tuple[Any, ...]]) -> _Seen:
        seen = cls()
        for r in rows:
            seen.add(r[1], r[0], r[5], json.loads(r[6]))
        return seen


def _escaped(text: str) -> str:
    """A value in COPY text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") \
        .replace("\r", "\\r")


def _direct_copy(values: Sequence[bytes], rollups: _Rollups, seen: _Seen,
                 skip: frozenset[str] = frozenset()) -> str:
    """COPY text (`COLUMNS`) of canonical events, adding them to `rollups` (events of a type in
    `skip` only to `seen`); raises `_NotClean` unless every one is a JSON object with text
    fields, a time and an object of data."""
    lines = []
    counts, fields, hour_of, saw = rollups.counts, rollups.fields, rollups.hour_of, seen.add
    loads, dumps = orjson.loads, orjson.dumps
    for raw in values:
        try:
            e = loads(raw)
            device_id, event_id, elder_id = e["device_id"], e["event_id"], e["elder_id"]
            community_id, kind, at = e["community_id"], e["type"], e["event_time"]
            received_at, data = e["received_at"], e["data"]
            if not (type(device_id) is str and type(event_id) is str and type(elder_id) is str
                    and type(community_id) is str and type(kind) is str and type(at) is str
                    and type(received_at) is str and type(data) is dict):
                raise _NotClean
            saw(device_id, at, kind, data)
            if kind in skip:
                seen.status_only += 1
                continue
            hour = hour_of(at)
            encoded = dumps(data).decode()
        except (ValueError, KeyError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise _NotClean from exc
        key = (hour, device_id, elder_id, kind)
        counts[key] = counts.get(key, 0) + 1
        for name, x in data.items():
            if type(x) is int or type(x) is float:
                fkey = (hour, device_id, elder_id, kind, name)
                a = fields.get(fkey)
                if a is None:
                    fields[fkey] = [1, x, x, x]
                else:
                    a[0] += 1
                    a[1] += x
                    if x < a[2]:
                        a[2] = x
                    elif x > a[3]:
                        a[3] = x
        prefix = device_id + "/"
        msg_id = event_id[len(prefix):] if event_id.startswith(prefix) else event_id
        line = (at, device_id, msg_id, elder_id, community_id, kind, encoded, received_at)
        # JSON without a backslash has no tab, newline, CR or backslash in its strings (raw
        # control characters are not JSON), and neither has `data` encoded again.
        lines.append("\t".join(line if b"\\" not in raw else map(_escaped, line)))
    lines.append("")
    return "\n".join(lines)


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
            await _Seen.of_rows(rows).apply(self.conn)
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
            except _NotClean:
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
            rollups, seen = _Rollups(), _Seen()
            try:
                async with self.conn.transaction():
                    async with self.conn.cursor().copy(_COPY_READINGS) as copy:
                        # Decoded a chunk at a time: PostgreSQL parses the rows already sent
                        # meanwhile, and the other writers get their turn.
                        for i in range(0, len(values), _CHUNK):
                            await copy.write(_direct_copy(values[i:i + _CHUNK], rollups,
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
            seen = _Seen.of_raw(values, self.skip)
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
    batch: dict[TopicPartition, list[Any]], producer: AIOKafkaProducer | None = None,
) -> int:
    """Write one fetched batch to the database, dead-letter the records set aside (with
    `producer`), then commit its offsets. With several writers the Kafka partitions are shared
    among them and written at once: a partition holds whole elders, so no two writers touch
    the same rollup rows."""
    for w in writers:  # what an earlier, failed batch set aside is replayed with it
        w.rejected.clear()
    shares: list[list[bytes]] = [[] for _ in writers]
    for tp, recs in batch.items():
        shares[tp.partition % len(writers)].extend(r.value or b"" for r in recs)
    counts = await asyncio.gather(*(w.write_raw(v) for w, v in zip(writers, shares,
                                                                    strict=True) if v))
    topic = next(iter(batch)).topic if batch else kafka.EVENTS
    for w in writers:
        if producer is not None:
            for raw, why in w.rejected:
                await producer.send_and_wait(kafka.DEADLETTER, dead_letter(
                    "store", topic, raw, why, datetime.now(UTC)))
        w.rejected.clear()
    try:
        await consumer_.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
    except CommitFailedError as exc:  # a rebalance: the batch is replayed, harmlessly
        log.warning("offset commit failed; batch will be replayed", error=str(exc))
    return sum(counts)


async def connect_writers(url: str, n: int, skip: frozenset[str] = frozenset()
                          ) -> list[ReadingsWriter]:
    """`n` writers, each on its own connection (PostgreSQL uses one core per connection)."""
    return [await ReadingsWriter.connect(url, skip) for _ in range(n)]


def status_only_types(settings: Settings) -> frozenset[str]:
    """Event types kept only as device status (`readings_store_heartbeats`)."""
    return frozenset() if settings.readings_store_heartbeats else frozenset({"heartbeat"})


async def run(settings: Settings, stop: asyncio.Event, group: str = GROUP,
              batch_size: int = 5000, topic: str = kafka.EVENTS, parallel: int = 2) -> None:
    """The `store` service: consume the events topic until `stop` is set."""
    await partitions.maintain(settings.database_url, settings.readings_retention_days,
                              settings.readings_days_ahead)
    writers = await connect_writers(settings.database_url, parallel,
                                    status_only_types(settings))
    c = consumer(settings, group, topic)
    producer = kafka.producer(settings)  # dead letters
    await producer.start()
    await c.start()
    from foundation import observability  # /readyz: consuming now

    observability.mark_subscribed("events")
    maintained = time.monotonic()
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=200, max_records=batch_size)
            if batch:
                with BATCH_SECONDS.time():
                    await store_batch(writers, c, batch, producer)
            if time.monotonic() - maintained > 3600:
                await partitions.maintain(settings.database_url,
                                          settings.readings_retention_days,
                                          settings.readings_days_ahead)
                maintained = time.monotonic()
    finally:
        await c.stop()
        await producer.stop()
        for w in writers:
            await w.close()
