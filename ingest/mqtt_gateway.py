"""MQTT -> Kafka. A message is acknowledged to the broker (QoS 1 PUBACK) only after Kafka has
acknowledged the canonical event or its dead-letter record, so an ingest crash loses nothing:
the broker redelivers whatever was not acknowledged to the persistent session."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiomqtt
from aiokafka import AIOKafkaProducer
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from eldercare import kafka, logs
from eldercare.config import Settings
from eldercare.mqtt import TOPIC_ROOT, MqttTarget
from ingest import metrics, zigbee
from ingest.deadletter import dead_letter
from ingest.dedup import RecentIds
from ingest.directory import DeviceDirectory
from ingest.validate import Rejection, check_device, decode, to_event, validate

log = logs.get(__name__)

SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/+"  # .../event and .../status; other channels are dead-lettered
MAX_IN_FLIGHT = 1000  # MQTT 5 Receive Maximum: messages received and not yet acknowledged
SESSION_EXPIRY_S = 7 * 86400  # the broker keeps our queue this long while no worker is connected


@dataclass(frozen=True)
class Outcome:
    """What happened to one message: "accepted", "duplicate" or "rejected" (with the reason)."""

    status: str
    event_id: str | None = None
    reason: str | None = None
    detail: str | None = None


class Ingest:
    """Validates, de-duplicates and produces; `handle` returns once Kafka has the record."""

    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, directory: DeviceDirectory,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.directory = directory
        self.recent = RecentIds()
        self.zigbee_names = zigbee.parse_names(settings.ingest_zigbee_devices)
        self._max_future = timedelta(seconds=settings.ingest_max_future_s)
        self._max_past = timedelta(seconds=settings.ingest_max_past_s)

    async def handle(self, topic: str, raw: bytes, source: str = "mqtt") -> Outcome:
        """Process one device message from `source` ("mqtt", "http")."""
        received_at = datetime.now(UTC)
        metrics.RECEIVED.labels(source).inc()
        result = await validate(
            topic, raw, self.directory, received_at, self.settings.mqtt_max_payload, source,
            self._max_future, self._max_past,
        )
        if isinstance(result, Rejection):
            return await self.reject(source, topic, raw, result, received_at)
        return await self._accept(result.event_id, result.key(),
                                  result.model_dump_json().encode(), source)

    async def handle_zigbee(self, topic: str, raw: bytes) -> list[Outcome]:
        """One `zigbee2mqtt/<name>` state message -> its device messages (or one rejection)."""
        source = "zigbee2mqtt"
        received_at = datetime.now(UTC)
        metrics.RECEIVED.labels(source).inc()

        async def rejected(why: Rejection) -> list[Outcome]:
            return [await self.reject(source, topic, raw, why, received_at)]

        if len(raw) > self.settings.mqtt_max_payload:
            return await rejected(Rejection(
                "payload_too_large", f"{len(raw)} bytes > limit {self.settings.mqtt_max_payload}"))
        device_id = zigbee.device_of(topic, self.zigbee_names)
        if device_id is None:
            return await rejected(Rejection("bad_topic", f"topic {topic!r} names no device"))
        device = await check_device(self.directory, device_id, None)
        if isinstance(device, Rejection):
            return await rejected(device)
        body = decode(raw)
        messages = body if isinstance(body, Rejection) else zigbee.translate(body, received_at)
        if isinstance(messages, Rejection):
            return await rejected(messages)
        events = [to_event(device, m, "event", received_at, source,
                           self._max_future, self._max_past) for m in messages]
        failed = next((e for e in events if isinstance(e, Rejection)), None)
        if failed is not None:  # all or nothing: the dead letter keeps the original bytes
            return await rejected(failed)
        return [await self._accept(e.event_id, e.key(), e.model_dump_json().encode(), source)
                for e in events if not isinstance(e, Rejection)]

    async def _accept(self, event_id: str, key: bytes, value: bytes, source: str) -> Outcome:
        if self.recent.seen(event_id):
            metrics.DUPLICATES.labels(source).inc()
            return Outcome("duplicate", event_id)
        self.recent.add(event_id)  # before the await: a concurrent copy is a duplicate too
        try:
            await self._produce(kafka.EVENTS, key, value)
        except BaseException:
            self.recent.discard(event_id)
            raise
        metrics.ACCEPTED.labels(source).inc()
        return Outcome("accepted", event_id)

    async def reject(
        self, source: str, topic: str, raw: bytes, why: Rejection, received_at: datetime,
    ) -> Outcome:
        """Dead-letter `raw` with the reason; returns once Kafka has the record."""
        await self._produce(kafka.DEADLETTER, None,
                            dead_letter(source, topic, raw, why, received_at))
        metrics.REJECTED.labels(source, why.reason).inc()
        log.warning("message rejected", source=source, topic=topic, reason=why.reason,
                    detail=why.detail[:300])
        return Outcome("rejected", reason=why.reason, detail=why.detail)

    async def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        started = time.perf_counter()
        await self.producer.send_and_wait(topic, value, key=key)
        metrics.PRODUCE_LATENCY.observe(time.perf_counter() - started)


def subscriptions(settings: Settings) -> list[str]:
    """Device topics and Zigbee2MQTT, as MQTT 5 shared subscriptions when a group is set."""
    group = settings.mqtt_shared_group
    plain = [SUBSCRIPTION, zigbee.SUBSCRIPTION]
    return [f"$share/{group}/{t}" for t in plain] if group else plain


def client_id(settings: Settings) -> str:
    """Stable per worker, so a restarted worker resumes its broker-side session."""
    return f"eldercare-ingest-{settings.mqtt_shared_group or 'solo'}-{settings.ingest_worker}"


async def consume(ingest: Ingest, settings: Settings, stop: asyncio.Event) -> None:
    """Consume device messages until `stop` is set; reconnects when the broker goes away."""
    target = MqttTarget.parse(settings.mqtt_url)
    while not stop.is_set():
        try:
            await _consume(target, settings, ingest, stop)
        except aiomqtt.MqttError as exc:
            log.warning("mqtt connection lost; reconnecting", error=str(exc))
            await asyncio.sleep(1)


async def _consume(
    target: MqttTarget, settings: Settings, ingest: Ingest, stop: asyncio.Event,
) -> None:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    # The broker sends at most this many unacknowledged messages; the rest wait in our session.
    # aiomqtt's own queue is then unbounded: a full queue would silently discard messages,
    # which (never acknowledged) would stall in the broker until the next reconnect.
    props.ReceiveMaximum = MAX_IN_FLIGHT
    client = target.client(
        identifier=client_id(settings), protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
        properties=props, max_queued_incoming_messages=0,
    )
    # aiomqtt acknowledges on receipt; paho underneath can defer the PUBACK until Kafka has it.
    client._client.manual_ack_set(True)
    failed = asyncio.Event()
    in_flight: set[asyncio.Task[None]] = set()
    async with client:
        for subscription in subscriptions(settings):
            granted = await client.subscribe(subscription, qos=1)
            if any(_refused(g) for g in granted or ()):
                # e.g. an ACL without zigbee2mqtt/#: the other subscriptions still work
                log.error("subscription refused by the broker", subscription=subscription)
        from eldercare import observability  # /readyz: subscribed now

        observability.mark_subscribed()
        log.info("ingest subscribed", subscriptions=subscriptions(settings),
                 client_id=client_id(settings))

        async def read() -> None:
            async for message in client.messages:
                task = asyncio.create_task(_process(client, ingest, message, failed))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

        reader = asyncio.create_task(read())
        waits = [reader, asyncio.create_task(stop.wait()), asyncio.create_task(failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            if in_flight:  # finish what was received: graceful shutdown loses nothing
                await asyncio.gather(*in_flight, return_exceptions=True)
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]
        if failed.is_set():  # drop the session: the broker redelivers what is unacknowledged
            raise aiomqtt.MqttError("processing failed")


def _refused(granted: int | ReasonCode) -> bool:
    """A SUBACK code >= 0x80 is a refusal (MQTT 5 reason code or 3.1.1 return code)."""
    return (granted.value if isinstance(granted, ReasonCode) else granted) >= 0x80


async def _process(
    client: aiomqtt.Client, ingest: Ingest, message: aiomqtt.Message, failed: asyncio.Event,
) -> None:
    metrics.IN_FLIGHT.inc()
    topic = message.topic.value
    payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
    try:
        if message.retain:
            # Replayed on subscribe (live messages arrive with retain=0): old state, not news.
            metrics.RETAINED_SKIPPED.inc()
        elif topic.startswith(zigbee.TOPIC_PREFIX):
            await ingest.handle_zigbee(topic, bytes(payload))
        else:
            await ingest.handle(topic, bytes(payload))
    except Exception:
        # Left unacknowledged and the session is dropped: the broker redelivers it on reconnect.
        log.exception("ingest failed; message left unacknowledged", topic=topic)
        failed.set()
        return
    finally:
        metrics.IN_FLIGHT.dec()
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)
