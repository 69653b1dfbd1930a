"""MQTT -> Kafka. A message is acknowledged to the broker (QoS 1 PUBACK) only after Kafka has
acknowledged the canonical event or its dead-letter record, so an ingest crash loses nothing:
the broker redelivers whatever was not acknowledged to the persistent session."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
from aiokafka import AIOKafkaProducer

from eldercare import kafka, logs
from eldercare.config import Settings
from eldercare.mqtt import TOPIC_ROOT, MqttTarget
from ingest import metrics
from ingest.deadletter import dead_letter
from ingest.dedup import RecentIds
from ingest.directory import DeviceDirectory
from ingest.validate import Rejection, validate

log = logs.get(__name__)

SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/event"


class Ingest:
    """Validates, de-duplicates and produces; `handle` returns once Kafka has the record."""

    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, directory: DeviceDirectory,
        source: str = "mqtt",
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.directory = directory
        self.source = source
        self.recent = RecentIds()

    async def handle(self, topic: str, raw: bytes) -> str:
        """Process one message; returns "accepted", "duplicate" or the rejection reason."""
        received_at = datetime.now(UTC)
        metrics.RECEIVED.labels(self.source).inc()
        result = await validate(
            topic, raw, self.directory, received_at, self.settings.mqtt_max_payload, self.source,
            timedelta(seconds=self.settings.ingest_max_future_s),
            timedelta(seconds=self.settings.ingest_max_past_s),
        )
        if isinstance(result, Rejection):
            await self._produce(kafka.DEADLETTER, None,
                                dead_letter(self.source, topic, raw, result, received_at))
            metrics.REJECTED.labels(self.source, result.reason).inc()
            log.warning("message rejected", topic=topic, reason=result.reason, detail=result.detail)
            return result.reason
        if self.recent.seen(result.event_id):
            metrics.DUPLICATES.labels(self.source).inc()
            return "duplicate"
        await self._produce(kafka.EVENTS, result.key(), result.model_dump_json().encode())
        self.recent.add(result.event_id)
        metrics.ACCEPTED.labels(self.source).inc()
        return "accepted"

    async def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        started = time.perf_counter()
        await self.producer.send_and_wait(topic, value, key=key)
        metrics.PRODUCE_LATENCY.observe(time.perf_counter() - started)


def _subscription(settings: Settings) -> str:
    group = settings.mqtt_shared_group
    return f"$share/{group}/{SUBSCRIPTION}" if group else SUBSCRIPTION


async def run(settings: Settings, stop: asyncio.Event, worker: int = 0) -> None:
    """Consume device messages until `stop` is set; reconnects when the broker goes away."""
    directory = DeviceDirectory(settings.database_url)
    await directory.load()
    producer = kafka.producer(settings)
    await producer.start()
    ingest = Ingest(settings, producer, directory)
    target = MqttTarget.parse(settings.mqtt_url)
    try:
        while not stop.is_set():
            try:
                await _consume(target, settings, ingest, stop, worker)
            except aiomqtt.MqttError as exc:
                log.warning("mqtt connection lost; reconnecting", error=str(exc))
                await asyncio.sleep(1)
    finally:
        await producer.stop()
        await directory.close()


async def _consume(
    target: MqttTarget, settings: Settings, ingest: Ingest, stop: asyncio.Event, worker: int,
) -> None:
    client = target.client(
        identifier=f"eldercare-ingest-{worker}", clean_session=False,
        max_queued_incoming_messages=10_000,
    )
    # aiomqtt acknowledges on receipt; paho underneath can defer the PUBACK until Kafka has it.
    client._client.manual_ack_set(True)
    async with client:
        await client.subscribe(_subscription(settings), qos=1)
        log.info("ingest subscribed", subscription=_subscription(settings))
        in_flight: set[asyncio.Task[None]] = set()
        failed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        stopper: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
        messages = aiter(client.messages)
        try:
            while True:
                nxt: asyncio.Future[aiomqtt.Message] = asyncio.ensure_future(anext(messages))
                waiting: set[asyncio.Future[Any]] = {nxt, stopper, failed}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    if failed.done():
                        failed.result()  # re-raise the processing failure: reconnect
                    break
                task = asyncio.create_task(_process(client, ingest, nxt.result(), failed))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            stopper.cancel()
            if in_flight:  # finish what was received: graceful shutdown loses nothing
                await asyncio.gather(*in_flight, return_exceptions=True)


async def _process(
    client: aiomqtt.Client, ingest: Ingest, message: aiomqtt.Message, failed: asyncio.Future[bool],
) -> None:
    payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
    try:
        await ingest.handle(message.topic.value, bytes(payload))
    except Exception as exc:
        # Left unacknowledged and the session is dropped: the broker redelivers it on reconnect.
        log.exception("ingest failed; message left unacknowledged", topic=message.topic.value)
        if not failed.done():
            failed.set_exception(aiomqtt.MqttError(f"processing failed: {exc}"))
        return
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)
