"""The readings writer against real Kafka (tansu) and PostgreSQL: a crash between the database
commit and the offset commit replays the batch without losing or doubling a row or a rollup;
daily partitions are made on demand and dropped by retention; heartbeats can be kept as device
status only."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devices.readings import partitions, writer
from devices.readings.copy_writer import ReadingsWriter
from devices.readings.event_times import earlier
from devices.registry import save
from foundation.config import Settings
from tests.conftest import make_community
from tests.helpers import eventually, new_topic


def _event(device: str, elder: str, n: int, at: datetime) -> dict[str, Any]:
    return {"event_id": f"{device}/m-{n}", "elder_id": elder, "community_id": "c-w",
            "device_id": device, "device_kind": "smart_watch", "type": "hr",
            "event_time": at.isoformat(), "received_at": at.isoformat(),
            "data": {"bpm": 60 + n % 40}, "source": "mqtt", "flags": []}


async def _topic(settings: Settings) -> str:
    return await new_topic(settings.kafka_bootstrap, 2, "test.readings")


async def _scalar(settings: Settings, sql: str, *args: Any) -> Any:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        row = await (await conn.execute(sql, args)).fetchone()
    return row[0] if row else None


async def test_restart_mid_batch_loses_and_doubles_nothing(infra: Settings) -> None:
    topic, elder = await _topic(infra), f"E-w-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).replace(microsecond=0)
    # Three days back: older than the partitions made ahead, so some are made on demand.
    events = [_event(f"{elder}-w{n % 3}", elder, n, now - timedelta(hours=72) + timedelta(
        seconds=180 * n)) for n in range(1200)]
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for e in events + events[:150]:  # ingest may hand over the same event twice
            await producer.send(topic, json.dumps(e).encode(), key=elder.encode())
        await producer.flush()
    finally:
        await producer.stop()

    group = f"store-{uuid.uuid4().hex[:6]}"
    # The first run takes its partitions directly (no group join: tansu takes seconds per
    # join) but commits to the same group, as the service does.
    first = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    await first.start()
    first.assign([TopicPartition(topic, p) for p in (0, 1)])
    store = await ReadingsWriter.connect(infra.database_url)
    try:
        batch = await first.getmany(timeout_ms=5000, max_records=300)
        assert await writer.store_batch([store], first, batch) > 0  # stored and committed
        batch = await first.getmany(timeout_ms=5000, max_records=300)
        assert await store.write(writer.rows_of(r for rs in batch.values() for r in rs)) > 0
        # ...and the process dies here: rows committed in PostgreSQL, offsets not in Kafka.
    finally:
        await store.close()
        await first.stop()
    stored_before = await _scalar(infra, "SELECT count(*) FROM readings WHERE elder_id = %s",
                                  elder)
    assert 0 < stored_before < len(events)

    stop = asyncio.Event()
    restarted = asyncio.create_task(writer.run(infra, stop, group=group, topic=topic))

    async def all_stored() -> bool:
        n = await _scalar(infra, "SELECT count(*) FROM readings WHERE elder_id = %s", elder)
        return bool(n == len(events))

    try:
        await eventually(all_stored, 60, "every event stored after the restart")
    finally:
        stop.set()
        await restarted
    assert await _scalar(infra, "SELECT count(DISTINCT (device_id, msg_id)) FROM readings"
                                " WHERE elder_id = %s", elder) == len(events)
    # Rollups saw each reading exactly once, even those replayed.
    assert await _scalar(infra, "SELECT sum(n) FROM readings_hourly WHERE elder_id = %s"
                                " AND field = ''", elder) == len(events)
    assert await _scalar(infra, "SELECT sum(sum) FROM readings_hourly WHERE elder_id = %s"
                                " AND field = 'bpm'", elder) == sum(
        e["data"]["bpm"] for e in events)


async def test_partitions_ahead_and_retention(infra: Settings) -> None:
    old_day = date(2020, 1, 1)
    async with await psycopg.AsyncConnection.connect(
            infra.database_url, autocommit=True) as conn:
        await partitions.ensure(conn, {old_day})
        await conn.execute(
            "INSERT INTO readings VALUES ('2020-01-01T12:00:00Z', 'd-old', 'm1', 'E-old', 'c',"
            " 'hr', '{}', now())")
        await conn.execute(
            "INSERT INTO readings_hourly VALUES ('2020-01-01T12:00:00Z', 'd-old', 'E-old', 'hr',"
            " '', 1, NULL, NULL, NULL)")
    await partitions.maintain(infra.database_url, keep_days=400, days_ahead=3)
    async with await psycopg.AsyncConnection.connect(infra.database_url) as conn:
        days = await partitions.existing(conn)
        today = datetime.now(UTC).date()
        assert {today + timedelta(days=n) for n in range(4)} <= days
        assert old_day not in days
        row = await (await conn.execute(
            "SELECT count(*) FROM readings_hourly WHERE device_id = 'd-old'")).fetchone()
        assert row == (0,)


async def test_heartbeats_can_be_kept_as_device_status_only(infra: Settings) -> None:
    """ELDERCARE_READINGS_STORE_HEARTBEATS=false: a heartbeat updates its device's battery and
    last seen but leaves no readings row or rollup, on every path of the writer (a clean
    batch, a replayed one, one with a record that is not a canonical event)."""
    c = make_community()
    save(infra.database_url, [c])
    elder = c.elders[0]
    watch = next(d.id for d in elder.devices if d.kind == "smart_watch")
    now = datetime.now(UTC).replace(microsecond=0)

    def event(n: int, type_: str, data: dict[str, Any]) -> bytes:
        e = {**_event(watch, elder.id, n, now - timedelta(minutes=30 - n)), "type": type_,
             "data": data, "community_id": c.id}
        return json.dumps(e).encode()

    settings = infra.model_copy(update={"readings_store_heartbeats": False})
    store = await ReadingsWriter.connect(infra.database_url,
                                                writer.status_only_types(settings))
    try:
        clean = [event(1, "heartbeat", {"battery": 61}), event(2, "hr", {"bpm": 72})]
        assert await store.write_raw(clean) == 1
        assert await store.write_raw(clean) == 0  # a replay: the staging path
        mixed = [event(3, "heartbeat", {"battery": 58}), b"not an event",
                 event(4, "hr", {"bpm": 75})]
        assert await store.write_raw(mixed) == 1  # row by row
    finally:
        await store.close()
    assert await _scalar(infra, "SELECT array_agg(type ORDER BY event_time) FROM readings"
                                " WHERE device_id = %s", watch) == ["hr", "hr"]
    assert await _scalar(infra, "SELECT count(*) FROM readings_hourly WHERE device_id = %s"
                                " AND type = 'heartbeat'", watch) == 0
    assert await _scalar(infra, "SELECT battery FROM devices WHERE id = %s", watch) == 58
    assert await _scalar(infra, "SELECT last_seen FROM devices WHERE id = %s", watch) == \
        now - timedelta(minutes=26)


def test_event_times_compare_as_text_only_when_written_alike() -> None:
    """A device's newest sighting: UTC times spelt alike compare as text (the fast way, for
    ingest's "Z" and Python's "+00:00"); anything else is compared as the instant it names."""
    assert earlier("2026-11-30T10:00:00.1Z", "2026-11-30T10:00:00.2Z")
    assert earlier("2026-11-30T10:00:00.100000+00:00", "2026-11-30T10:00:00.200000+00:00")
    assert not earlier("2026-11-30T10:00:00.2+00:00", "2026-11-30T10:00:00.1+00:00")
    # Same length, other offsets: 11:00+01:00 is 10:00 UTC, not after 10:30 UTC.
    assert earlier("2026-11-30T11:00:00+01:00", "2026-11-30T10:30:00+00:00")
    assert not earlier("2026-11-30T10:30:00+00:00", "2026-11-30T11:00:00+01:00")
    assert earlier("2026-11-30T09:59:00Z", "2026-11-30T10:00:00+00:00")
    assert earlier("2026-11-30T09:59:00", "2026-11-30T10:00:00Z")  # no offset: UTC
