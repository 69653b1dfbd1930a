"""`eldercare bench store`: readings/s written from Kafka to PostgreSQL by the `store` writer,
next to a plain COPY of the same rows into the same table in the same run (the baseline).

Both write into an empty `readings` table (daily partitions already made, same indexes). The
writer's rate runs from its first fetched batch to the last row committed (a consumer group
join, seconds on tansu, is not counted); it includes Kafka fetches, JSON decoding, the staging
COPY, the idempotent INSERT and the hourly rollups, and offset commits.

Each side's CPU is reported too (`cpu_s`: the bench process's own, its PostgreSQL's with the
backends, its tansu's), which moves less with the machine's load than the rates do."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devices.readings import partitions, writer
from eldercare.bench.idle import tree_cpu_s
from eldercare.bench.stack import database_and_kafka
from foundation.config import Settings

PARTITIONS = 6


def _progress(text: str) -> None:
    print(f"[bench store] {text}", file=sys.stderr, flush=True)


def _events(n: int, devices: int = 1000) -> list[bytes]:
    """Canonical events as ingest writes them: heart rate and blood pressure from a fleet of
    `devices`, in time order over the last hour (a live feed, or an hour's backlog)."""
    rng = random.Random(4)
    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(n):
        d = rng.randrange(devices)
        at = (start + timedelta(seconds=3600 * i / n)).isoformat()
        kind, data = ("bp", {"systolic": rng.randint(100, 170), "diastolic": rng.randint(60, 95),
                             "pulse": rng.randint(50, 110)}) if d % 4 == 0 else \
            ("hr", {"bpm": rng.randint(50, 120)})
        out.append(json.dumps({
            "event_id": f"D{d}/m{i}", "elder_id": f"E{d}", "community_id": "c-bench",
            "device_id": f"D{d}", "device_kind": "smart_watch", "type": kind,
            "event_time": at, "received_at": at, "data": data, "source": "mqtt", "flags": [],
        }).encode())
    return out


async def _produce(settings: Settings, topic: str, events: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, e, key=json.loads(e)["elder_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _reset(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE readings, readings_hourly")
        await partitions.maintain(url, keep_days=400, days_ahead=1)


async def _raw_copy(url: str, rows: list[tuple[Any, ...]]) -> float:
    """The baseline: one COPY of all rows straight into `readings`; rows/s."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        started = time.perf_counter()
        async with conn.cursor().copy(
                f"COPY readings ({', '.join(writer.COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)
        await conn.commit()
        return len(rows) / (time.perf_counter() - started)


async def _store(settings: Settings, topic: str, n: int) -> float:
    """The writer draining the topic; rows/s from the first fetched batch to the last commit."""
    writer.collect_less_often()  # as the store service does
    consumer = writer.consumer(settings, f"bench-{uuid.uuid4().hex[:6]}", topic)
    writers = await writer.connect_writers(settings.database_url, 2)
    await consumer.start()
    try:
        stored = 0
        started = 0.0
        while stored < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=writer.BATCH_SIZE)
            if batch and not started:
                started = time.perf_counter()
            stored += await writer.store_batch(writers, consumer, batch) if batch else 0
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        for w in writers:
            await w.close()


def run(quick: bool = False) -> dict[str, Any]:
    """Figures of the store bench; starts its own PostgreSQL and tansu."""
    n = 20_000 if quick else 200_000
    with database_and_kafka("bench-store-") as infra:
        settings, pg, kf = infra.settings, infra.postgres, infra.kafka
        events = _events(n)
        rows = writer.rows_of(_Record(e) for e in events)
        topic = f"bench.store.{uuid.uuid4().hex[:6]}"
        _progress(f"producing {n} events to {topic}")
        asyncio.run(_produce(settings, topic, events))
        asyncio.run(_reset(pg.url))
        _progress("baseline: plain COPY of the same rows")
        with _Cpu(pg.pid, kf.pid) as raw_cpu:
            raw = asyncio.run(_raw_copy(pg.url, rows))
        asyncio.run(_reset(pg.url))
        _progress("store writer draining the topic")
        with _Cpu(pg.pid, kf.pid) as store_cpu:
            store = asyncio.run(_store(settings, topic, n))
    _progress(f"raw COPY {raw:,.0f}/s, store {store:,.0f}/s, ratio {store / raw:.2f};"
              f" CPU s raw {raw_cpu.spent}, store {store_cpu.spent}")
    return {
        "readings": n, "raw_copy_per_s": round(raw), "store_per_s": round(store),
        "ratio": round(store / raw, 3), "baseline": {"raw_copy_per_s": round(raw)},
        "cpu_s": {"raw_copy": raw_cpu.spent, "store": store_cpu.spent},
    }


class _Cpu:
    """CPU seconds spent while the block runs: this process, PostgreSQL, the Kafka broker."""

    def __init__(self, postgres: int | None, kafka: int | None) -> None:
        self._trees = {"postgres": postgres, "kafka": kafka}
        self.spent: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {"python": time.process_time()}
        for name, pid in self._trees.items():
            now[name] = tree_cpu_s(pid) if pid else 0.0
        return now

    def __enter__(self) -> _Cpu:
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._now()
        self.spent = {k: round(end[k] - self._start[k], 2) for k in end}


class _Record:
    """Just enough of a Kafka record for `writer.rows_of`."""

    partition = 0
    offset = 0

    def __init__(self, value: bytes) -> None:
        self.value = value


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv)))
