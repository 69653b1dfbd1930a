"""Kafka -> PostgreSQL: every canonical event into the readings table, in batches.

One batch, in order: COPY the rows into a per-connection staging table; in the same
transaction move them into `readings` with ON CONFLICT DO NOTHING (the key is device, message
id, event time) and add only the rows really inserted to the hourly rollups; commit; then
commit the Kafka offsets. A crash anywhere before the offset commit replays the batch, which then
inserts nothing and adds nothing to the rollups: no row is lost and none is counted twice."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import Histogram

from devices.readings import partitions
from devices.readings.copy_writer import UNREADABLE, ReadingsWriter
from devices.readings.rows import COLUMNS as COLUMNS  # re-exported: the store bench uses it
from devices.readings.rows import row_of
from foundation import kafka, logs
from foundation.config import Settings
from foundation.deadletter import dead_letter

log = logs.get(__name__)

GROUP = "eldercare-store"
# Records per fetched batch at most. Under a backlog a bigger batch means fewer rollup rows per
# reading (one per device, hour, type and field per batch), fewer transactions and fewer offset
# commits: in `eldercare bench store` 20,000 rather than 5,000 halved the rollup rows per
# reading (0.13 -> 0.06) and cut the database's CPU by ~13 %. A live feed's batches are as
# small as what has arrived since the last one.
BATCH_SIZE = 20_000
BATCH_SECONDS = Histogram("eldercare_store_batch_seconds", "Time to store one batch")


def collect_less_often() -> None:
    """Fewer garbage collections in the store's process. Each batch brings up to `BATCH_SIZE`
    Kafka records that live until the batch is stored, and decoding them allocates a few
    dicts per record: with the default thresholds the collector walks the batch's records
    again and again (measured by `eldercare bench store`: ~10 % of the writer's CPU)."""
    gc.set_threshold(20_000, 50, 100)


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
    """The group consumer of the events topic (batch size is set per `getmany`); nothing
    urgent waits for the store, so it polls as a background consumer."""
    return kafka.background_consumer(settings, group, topic)


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
              batch_size: int = BATCH_SIZE, topic: str = kafka.EVENTS, parallel: int = 2) -> None:
    """The `store` service: consume the events topic until `stop` is set."""
    collect_less_often()
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
            # Records end the wait at once, and so does a stop.
            batch = await kafka.fetch(c, stop, kafka.BACKGROUND_WAIT_MS,
                                      max_records=batch_size)
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
