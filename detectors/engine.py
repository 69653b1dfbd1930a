"""The detector service: consume canonical events, run the detectors, produce alerts.

Offsets are committed only after every alert produced from the batch is acknowledged by Kafka,
so a crash replays events rather than losing alerts; alert ids are deterministic, so a replayed
alert is recognised downstream."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from detectors.alerts import Alert
from detectors.immediate import immediate_alert
from devices.events import CanonicalEvent
from eldercare import kafka, logs
from eldercare.config import Settings

log = logs.get(__name__)

GROUP = "eldercare-detectors"


def detect(event: CanonicalEvent, now: datetime) -> list[Alert]:
    """Every detector's verdict on one event."""
    found = immediate_alert(event, now)
    return [found] if found else []


async def run(settings: Settings, stop: asyncio.Event) -> None:
    consumer = kafka.consumer(settings, GROUP, kafka.EVENTS)
    producer = kafka.producer(settings)
    await producer.start()
    await consumer.start()
    log.info("detectors consuming", topic=kafka.EVENTS)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            await _process(producer, [r.value for recs in batches.values() for r in recs])
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def _process(producer: AIOKafkaProducer, values: list[bytes]) -> None:
    sends = []
    for value in values:
        try:
            event = CanonicalEvent.model_validate_json(value)
        except ValueError:
            log.error("unreadable canonical event skipped", value=value[:200])
            continue
        for alert in detect(event, datetime.now(UTC)):
            log.info("alert", alert_id=alert.alert_id, kind=alert.kind, elder=alert.elder_id)
            sends.append(await producer.send(
                kafka.ALERTS, alert.model_dump_json().encode(), key=alert.key()
            ))
    if sends:
        await asyncio.gather(*sends)
