"""The readings table's time layout: TimescaleDB when installed, else daily range partitions.

Plain PostgreSQL: one partition per UTC day, `readings_YYYYMMDD`, made `days_ahead` days in
advance (and on demand by the writer for late or early events); retention drops whole
partitions, which is instant and leaves no bloat. TimescaleDB: a hypertable with compression
and retention policies and a continuous aggregate counting readings per hour."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from foundation import logs

log = logs.get(__name__)

_LOCK_ID = 7_420_004  # serialises partition DDL between writers
_NAME = "readings_%Y%m%d"


async def has_timescale(conn: psycopg.AsyncConnection[Any]) -> bool:
    """True when the readings table is a TimescaleDB hypertable (decided by migration 0002)."""
    row = await (await conn.execute(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).fetchone()
    return row is not None


def partition_name(day: date) -> str:
    return day.strftime(_NAME)


async def existing(conn: psycopg.AsyncConnection[Any]) -> set[date]:
    """Days that have a partition."""
    rows = await (await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'readings'::regclass")).fetchall()
    return {datetime.strptime(r[0], _NAME).date() for r in rows}


async def ensure(conn: psycopg.AsyncConnection[Any], days: set[date]) -> set[date]:
    """Create the partitions of `days` that are missing (in its own transaction)."""
    made: set[date] = set()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        missing = days - await existing(conn)
        for day in sorted(missing):
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF readings"
                f" FOR VALUES FROM ('{start.isoformat()}') TO"
                f" ('{(start + timedelta(days=1)).isoformat()}')")
            made.add(day)
    if made:
        log.info("readings partitions created", days=[d.isoformat() for d in sorted(made)])
    return made


async def drop_older_than(conn: psycopg.AsyncConnection[Any], keep_days: int,
                          today: date | None = None) -> list[str]:
    """Retention: drop partitions (and rollups) of days older than `keep_days`."""
    today = today or datetime.now(UTC).date()
    cutoff = today - timedelta(days=keep_days)
    dropped = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        for day in sorted(await existing(conn)):
            if day < cutoff:
                await conn.execute(f"DROP TABLE {partition_name(day)}")
                dropped.append(partition_name(day))
        await conn.execute("DELETE FROM readings_hourly WHERE hour < %s",
                           (datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC),))
    if dropped:
        log.info("readings partitions dropped", partitions=dropped)
    return dropped


async def _timescale_policies(conn: psycopg.AsyncConnection[Any], keep_days: int) -> None:
    # Not exercised by the tests: TimescaleDB cannot be installed here (see README).
    await conn.execute(
        "ALTER TABLE readings SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'device_id')")
    await conn.execute(
        "SELECT add_compression_policy('readings', interval '7 days', if_not_exists => true)")
    await conn.execute(
        "SELECT add_retention_policy('readings', %s::interval, if_not_exists => true)",
        (f"{keep_days} days",))
    await conn.execute(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS readings_hourly_counts"
        " WITH (timescaledb.continuous) AS SELECT time_bucket('1 hour', event_time) AS hour,"
        " device_id, elder_id, type, count(*) AS n FROM readings"
        " GROUP BY 1, 2, 3, 4 WITH NO DATA")
    await conn.execute(
        "SELECT add_continuous_aggregate_policy('readings_hourly_counts',"
        " start_offset => interval '3 days', end_offset => interval '1 hour',"
        " schedule_interval => interval '30 minutes', if_not_exists => true)")


async def maintain(url: str, keep_days: int, days_ahead: int) -> None:
    """Partitions ahead and retention (plain path) or TimescaleDB policies; run at writer start
    and periodically."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if await has_timescale(conn):
            await _timescale_policies(conn, keep_days)
            return
        today = datetime.now(UTC).date()
        await ensure(conn, {today + timedelta(days=n) for n in range(-1, days_ahead + 1)})
        await drop_older_than(conn, keep_days, today)
