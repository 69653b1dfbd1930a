"""Idle consumers rest (no polling) and the platform's producers wake them: a record still
arrives, with the rest's fallback look switched off, only because the producer's NOTIFY woke
the consumer; records from outside the platform arrive by the fallback look; without a
database to carry wake-ups a consumer never rests. Real tansu and PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from foundation import kafka, wakeup
from foundation.config import Settings
from foundation.wakeup import WakingConsumer
from tests.helpers import eventually, new_topic


@pytest.fixture
async def topic(infra: Settings) -> str:
    return await new_topic(infra.kafka_bootstrap, 2, "test.wakeup")


@pytest.fixture
def quick_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wakeup, "ACTIVE_S", 0.3)


@contextlib.asynccontextmanager
async def _resting_consumer(settings: Settings, topic: str, background: bool = False,
                            ) -> AsyncIterator[WakingConsumer]:
    make = kafka.background_consumer if background else kafka.consumer
    consumer = make(settings, f"test-{uuid.uuid4().hex[:6]}", topic)
    assert isinstance(consumer, WakingConsumer)
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)  # joined, partitions assigned
        await eventually(lambda: consumer.resting, 20, "the idle consumer to rest")
        yield consumer
    finally:
        await consumer.stop()


async def _received(consumer: WakingConsumer, value: bytes) -> bool:
    batches = await consumer.getmany(timeout_ms=100)
    return any(r.value == value for records in batches.values() for r in records)


# Both kinds of consumer: the platform's, and the background one of the store (a longer fetch
# wait and a rarer look; the same rest and wake-ups).
KINDS = pytest.mark.parametrize("background", [False, True], ids=["consumer", "background"])


def _looks_every(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(wakeup, "PROBE_EVERY_S", seconds)
    monkeypatch.setattr(kafka, "BACKGROUND_PROBE_EVERY_S", seconds)


@KINDS
async def test_a_platform_producer_wakes_a_resting_consumer(
    infra: Settings, topic: str, quick_rest: None, monkeypatch: pytest.MonkeyPatch,
    background: bool,
) -> None:
    _looks_every(monkeypatch, 3600.0)  # only the wake-up can deliver
    async with _resting_consumer(infra, topic, background) as consumer:
        producer = kafka.producer(infra)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"sos", key=b"E0001")
            await eventually(lambda: _received(consumer, b"sos"), 20, "the record")
        finally:
            await producer.stop()


@KINDS
async def test_a_record_from_outside_the_platform_arrives_by_the_fallback_look(
    infra: Settings, topic: str, quick_rest: None, monkeypatch: pytest.MonkeyPatch,
    background: bool,
) -> None:
    _looks_every(monkeypatch, 0.2)
    async with _resting_consumer(infra, topic, background) as consumer:
        outside = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)  # no NOTIFY
        await outside.start()
        try:
            await outside.send_and_wait(topic, b"from-outside", key=b"E0002")
            await eventually(lambda: _received(consumer, b"from-outside"), 20, "the record")
        finally:
            await outside.stop()


async def test_without_a_database_a_consumer_never_rests(
    infra: Settings, topic: str, quick_rest: None,
) -> None:
    settings = infra.model_copy(update={"database_url": ""})
    consumer = kafka.consumer(settings, f"test-{uuid.uuid4().hex[:6]}", topic)
    await consumer.start()
    try:
        for _ in range(10):  # well past ACTIVE_S: each getmany waits 100 ms
            await consumer.getmany(timeout_ms=100)
            assert not consumer.resting
    finally:
        await consumer.stop()
