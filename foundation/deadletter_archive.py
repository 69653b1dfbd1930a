"""Dead letters kept in PostgreSQL.

The store service reads `eldercare.deadletter.v1` as the consumer group `eldercare-deadletters`
and writes every record into the `dead_letters` table before it commits the record's offset.
The supervisor rolls the embedded Kafka only once this group has caught up too, so a roll (or
a real broker's retention) never throws a dead letter away. A record read twice (redelivered
after a restart) is the same bytes: its SHA-256 keeps it once. `eldercare deadletters` lists
them for operators."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from foundation import kafka, logs
from foundation.config import Settings
from foundation.deadletter import MAX_DETAIL_CHARS, MAX_KEPT_BYTES, DeadLetter

log = logs.get(__name__)

GROUP = "eldercare-deadletters"
DRAIN_S = 5.0

_INSERT = (
    "INSERT INTO dead_letters (record_sha256, source, topic, reason, detail, received_at,"
    " payload, payload_size, payload_truncated, payload_sha256)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (record_sha256) DO NOTHING"
)


def _text(value: str) -> str:
    return value.replace("\x00", "\\x00")  # PostgreSQL text holds no NUL


def row_of(raw: bytes) -> tuple[Any, ...]:
    """The `dead_letters` row of one record of the dead-letter topic. A record that is not a
    dead letter is kept too (reason `unreadable_dead_letter`, the bytes as its payload)."""
    try:
        d = DeadLetter.model_validate_json(raw)
        return (hashlib.sha256(raw).hexdigest(), _text(d.source), _text(d.topic),
                _text(d.reason), _text(d.detail), d.received_at, d.original(), d.payload_size,
                d.payload_truncated, d.payload_sha256)
    except ValueError as exc:
        return _unreadable(raw, str(exc))


def _unreadable(raw: bytes, why: str) -> tuple[Any, ...]:
    digest = hashlib.sha256(raw).hexdigest()
    return (digest, "unknown", kafka.DEADLETTER, "unreadable_dead_letter",
            _text(why)[:MAX_DETAIL_CHARS], None, raw[:MAX_KEPT_BYTES], len(raw),
            len(raw) > MAX_KEPT_BYTES, digest)


async def archive(conn: psycopg.AsyncConnection[Any], records: Iterable[bytes]) -> int:
    """Write records of the dead-letter topic into `dead_letters` (a record already there is
    skipped); returns how many were new. The caller commits."""
    new = 0
    async with conn.cursor() as cur:
        for raw in records:
            try:
                async with conn.transaction():  # a savepoint: one bad row never blocks the rest
                    await cur.execute(_INSERT, row_of(raw))
            except psycopg.DataError as exc:  # e.g. a date PostgreSQL cannot hold
                log.error("dead letter kept as unreadable", exc_info=exc)
                async with conn.transaction():
                    await cur.execute(_INSERT, _unreadable(raw, str(exc)))
            new += cur.rowcount
    return new


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Archive the dead-letter topic until `stop` (part of the store service), then what is
    left on it; an offset is committed only after its records are in the database."""
    consumer = kafka.background_consumer(settings, GROUP, kafka.DEADLETTER)
    await consumer.start()
    loop = asyncio.get_running_loop()
    drain_until = 0.0  # set once the stop is seen
    try:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
            while True:
                draining = stop.is_set()
                if draining and not drain_until:  # stopping: first archive what is on the
                    # topic (the embedded broker forgets it when it stops), for at most DRAIN_S
                    drain_until = loop.time() + DRAIN_S
                    kafka.keep_awake(consumer, DRAIN_S)
                # Records end the wait at once, and so does a stop (then the drain fetches).
                batch = await kafka.fetch(consumer, stop,
                                          200 if draining else kafka.BACKGROUND_WAIT_MS,
                                          max_records=500)
                if draining and (not batch or loop.time() > drain_until):
                    break
                if not batch:
                    continue
                async with conn.transaction():
                    new = await archive(conn, (r.value or b"" for rs in batch.values()
                                               for r in rs))
                await consumer.commit()
                if new:
                    log.info("dead letters archived", records=new)
    finally:
        await consumer.stop()


def recent(url: str, limit: int = 20, source: str | None = None,
           since: datetime | None = None) -> list[dict[str, Any]]:
    """The latest archived dead letters, newest first (payload as bytes)."""
    with psycopg.connect(url, row_factory=dict_row, connect_timeout=5) as conn:
        return conn.execute(
            "SELECT id, source, topic, reason, detail, received_at, archived_at, payload,"
            " payload_size, payload_truncated, payload_sha256 FROM dead_letters"
            " WHERE (%(s)s::text IS NULL OR source = %(s)s)"
            " AND (%(t)s::timestamptz IS NULL OR received_at >= %(t)s)"
            " ORDER BY received_at DESC NULLS LAST, id DESC LIMIT %(n)s",
            {"s": source, "t": since, "n": limit}).fetchall()
