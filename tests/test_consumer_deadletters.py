"""A record a consumer cannot process is dead-lettered with its reason and the consumer moves
on (real tansu and PostgreSQL): the detectors meet an event their logic fails on, the store
meets records that are not canonical events or that PostgreSQL refuses, the dispatcher an
unreadable alert and an alert it cannot record. The records after them are still processed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError

from devices.readings import writer
from devices.registry import Community, save
from foundation import kafka
from foundation.config import Settings
from foundation.contracts.alerts import Alert, Severity
from foundation.faults import is_transient
from tests.conftest import make_community
from tests.helpers import eventually, read_topic
from tests.test_engine_stream import engine, new_topic
from tests.twilio_mock import TwilioMock


def _event(c: Community, kind: str, type_: str, data: dict[str, Any],
           at: str | None = None) -> bytes:
    elder = c.elders[0]
    device = next(d.id for d in elder.devices if d.kind == kind)
    when = at or datetime.now(UTC).isoformat()
    return json.dumps({
        "event_id": f"{device}/{uuid.uuid4().hex[:10]}", "elder_id": elder.id,
        "community_id": c.id, "device_id": device, "device_kind": kind, "type": type_,
        "event_time": when, "received_at": datetime.now(UTC).isoformat(), "data": data,
        "source": "mqtt", "flags": []}).encode()


async def _produce(settings: Settings, topic: str, key: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=key.encode())
    finally:
        await producer.stop()


async def _letters(settings: Settings, source: str, values: list[bytes]) -> dict[str, Any]:
    """The dead letters from `source` of `values`, by sha256."""
    want = {hashlib.sha256(v).hexdigest() for v in values}

    def ours(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {r["payload_sha256"]: r for r in rs
                if r.get("source") == source and r.get("payload_sha256") in want}

    records = await read_topic(settings.kafka_bootstrap, kafka.DEADLETTER,
                               lambda rs: len(ours(rs)) >= len(want))
    return ours(records)


async def test_detectors_dead_letter_an_event_their_logic_fails_on_and_go_on(
    infra: Settings, community: Community,
) -> None:
    topic = await new_topic(infra, 1)
    elder = community.elders[0]
    bad = _event(community, "smart_watch", "steps", {"steps": "many"})  # int("many") raises
    sos = _event(community, "sos_button", "sos", {})
    async with engine(infra, topic=topic, group=f"g-{uuid.uuid4().hex[:6]}"):
        await _produce(infra, topic, elder.id, [bad, b"\xff not json", sos])
        alerts = await read_topic(infra.kafka_bootstrap, kafka.ALERTS, lambda rs: any(
            r["elder_id"] == elder.id and r["kind"] == "sos" for r in rs))
    assert any(r["elder_id"] == elder.id and r["kind"] == "sos" for r in alerts)
    letters = await _letters(infra, "detectors", [bad, b"\xff not json"])
    failed = letters[hashlib.sha256(bad).hexdigest()]
    assert failed["reason"] == "detector_error" and "ValueError" in failed["detail"]
    assert letters[hashlib.sha256(b"\xff not json").hexdigest()]["reason"] == "unreadable_event"


async def test_the_store_dead_letters_records_it_cannot_store_and_stores_the_rest(
    infra: Settings, community: Community,
) -> None:
    topic = await new_topic(infra, 1)
    elder = community.elders[0]
    good = [_event(community, "smart_watch", "hr", {"bpm": 60 + n}) for n in range(2)]
    bad = [_event(community, "smart_watch", "hr", {"bpm": 61, "note": "a\u0000b"}),
           _event(community, "smart_watch", "hr", {"bpm": 62}, at="yesterday-ish"),
           b'{"not": "an event"}']
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(infra, stop, group=f"s-{uuid.uuid4().hex[:6]}",
                                          topic=topic, parallel=1))
    try:
        await _produce(infra, topic, elder.id, [good[0], *bad, good[1]])
        letters = await _letters(infra, "store", bad)
        assert {r["reason"] for r in letters.values()} <= {"unstorable_event",
                                                           "unreadable_event"}
        assert all(r["topic"] == topic and r["detail"] for r in letters.values()), letters

        async def stored() -> bool:
            async with await psycopg.AsyncConnection.connect(infra.database_url) as conn:
                row = await (await conn.execute(
                    "SELECT count(*) FROM readings WHERE elder_id = %s", (elder.id,))).fetchone()
            return row is not None and row[0] == 2

        await eventually(stored, 30, "both good readings stored")
        assert not task.done(), "the store service stopped"
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def test_the_dispatcher_puts_aside_an_alert_it_cannot_take_and_calls_for_the_next(
    platform: Settings, infra: Settings, twilio: TwilioMock, workdir: Path,
) -> None:
    c = make_community(elders=2)
    save(infra.database_url, [c])
    first, second = c.elders
    now = datetime.now(UTC)

    def alert(elder_id: str, alert_id: str) -> bytes:
        return Alert(alert_id=alert_id, elder_id=elder_id, community_id=c.id, kind="sos",
                     severity=Severity.CRITICAL, event_time=now,
                     detected_at=now).model_dump_json().encode()

    repeated = alert(first.id, f"a-{uuid.uuid4().hex}")
    await _produce(infra, kafka.ALERTS, first.id, [repeated])

    async def incidents(elder_id: str) -> int:
        async with await psycopg.AsyncConnection.connect(infra.database_url) as conn:
            row = await (await conn.execute(
                "SELECT count(*) FROM incidents WHERE elder_id = %s", (elder_id,))).fetchone()
        return int(row[0]) if row else 0

    await eventually(lambda: incidents(first.id), 30, "the first incident")
    async with await psycopg.AsyncConnection.connect(infra.database_url) as conn:
        # Resolved long ago: the same alert again cannot join it (issue 14's crash loop).
        await conn.execute("UPDATE incidents SET status = 'resolved',"
                           " opened_at = now() - interval '2 days' WHERE elder_id = %s",
                           (first.id,))
        await conn.commit()
    up_log = workdir / "dispatcher.log"
    starts = up_log.read_text().count("dispatcher started")
    garbage = b'{"alert_id": 7}'
    await _produce(infra, kafka.ALERTS, first.id, [repeated, garbage])
    await _produce(infra, kafka.ALERTS, second.id, [alert(second.id, f"b-{uuid.uuid4().hex}")])
    await eventually(lambda: twilio.calls(second.contacts[0].phone), 30, "the next SOS's call")
    letters = await _letters(infra, "dispatcher", [garbage])
    assert letters[hashlib.sha256(garbage).hexdigest()]["reason"] == "alert_rejected"
    assert await incidents(first.id) == 1, "the repeated alert opened no second incident"
    assert up_log.read_text().count("dispatcher started") == starts, "the dispatcher restarted"


def test_outages_are_retried_and_only_the_records_own_faults_are_dead_lettered() -> None:
    outages = [psycopg.OperationalError("server closed the connection"),
               psycopg.errors.AdminShutdown(), psycopg.InterfaceError("connection closed"),
               KafkaConnectionError(), KafkaTimeoutError(), ConnectionRefusedError(),
               TimeoutError()]
    own = [ValueError("bad"), KeyError("x"), RuntimeError("alert recorded concurrently"),
           psycopg.errors.DataError(), psycopg.errors.UniqueViolation(),
           MessageSizeTooLargeError(), RecursionError()]
    assert all(is_transient(e) for e in outages)
    assert not any(is_transient(e) for e in own)
