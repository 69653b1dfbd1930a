"""MQTT -> Kafka. A message is acknowledged to the broker (QoS 1 PUBACK) only after Kafka has
acknowledged the canonical event or its dead-letter record, so an ingest crash loses nothing:
the broker redelivers whatever was not acknowledged to the persistent session."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from foundation import kafka, logs
from foundation.config import Settings
from foundation.contracts.events import CanonicalEvent
from foundation.deadletter import Rejection, dead_letter
from foundation.faults import describe, is_transient
from foundation.mqtt import TOPIC_ROOT, MqttTarget
from ingest import metrics, zigbee
from ingest.dedup import RecentIds, identity
from ingest.directory import DeviceDirectory
from ingest.validate import check_device, decode, to_event, validate

log = logs.get(__name__)

SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/+"  # .../event and .../status; other channels are dead-lettered
MAX_IN_FLIGHT = 1000  # MQTT 5 Receive Maximum: messages received and not yet acknowledged
SESSION_EXPIRY_S = 7 * 86400  # the broker keeps our queue this long while no worker is connected
BURST_WAIT_S = 0.001  # under load the reader lets messages gather this long between bursts


@dataclass(frozen=True)
class Outcome:
    """What happened to one message: "accepted", "duplicate" or "rejected" (with the reason)."""

    status: str
    event_id: str | None = None
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Submitted:
    """A message handed to the producer: `outcome` holds once `durable` (Kafka's acknowledgement
    of its canonical event or dead-letter record) has resolved; `durable` is None when there is
    nothing to write (a duplicate)."""

    outcome: Outcome
    durable: asyncio.Future[Any] | None = None

    async def wait(self) -> Outcome:
        """The outcome, once Kafka has the record (raises if the produce failed)."""
        if self.durable is not None:
            await self.durable
        return self.outcome


class _SourceMetrics:
    """The label children of one source, bound once: `labels()` per message is not free."""

    def __init__(self, source: str) -> None:
        self.received = metrics.RECEIVED.labels(source)
        self.accepted = metrics.ACCEPTED.labels(source)
        self.duplicates = metrics.DUPLICATES.labels(source)


def _failed(fut: asyncio.Future[Any]) -> bool:
    """Whether a produce future ended without Kafka's acknowledgement (marks it retrieved)."""
    return fut.cancelled() or fut.exception() is not None


class Ingest:
    """Validates, de-duplicates and produces. `submit` hands a message to the producer and
    returns at once with Kafka's future; `handle` returns once Kafka has the record."""

    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, directory: DeviceDirectory,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.directory = directory
        self.recent = RecentIds(settings.ingest_dedup_capacity, settings.ingest_dedup_window_s)
        self.zigbee_names = zigbee.parse_names(settings.ingest_zigbee_devices)
        self._max_future = timedelta(seconds=settings.ingest_max_future_s)
        self._max_past = timedelta(seconds=settings.ingest_max_past_s)
        self._local_tz = ZoneInfo(settings.ingest_device_timezone)
        self._sources: dict[str, _SourceMetrics] = {}

    def _source(self, source: str) -> _SourceMetrics:
        found = self._sources.get(source)
        if found is None:
            found = self._sources[source] = _SourceMetrics(source)
        return found

    async def handle(self, topic: str, raw: bytes, source: str = "mqtt") -> Outcome:
        """Process one device message from `source` ("mqtt", "http")."""
        return await (await self.submit(topic, raw, source)).wait()

    async def submit(self, topic: str, raw: bytes, source: str = "mqtt") -> Submitted:
        """Validate one device message and hand its canonical event (or dead-letter record) to
        the producer; returns without waiting for Kafka's acknowledgement."""
        checked = await self.check(topic, raw, source)
        if isinstance(checked, Submitted):
            return checked
        return await self._submit_event(checked, source)

    async def check(
        self, topic: str, raw: bytes, source: str = "mqtt",
    ) -> CanonicalEvent | Submitted:
        """Validate one device message: its canonical event, for the caller to produce (after
        `claim`), or its dead-letter record already handed to the producer."""
        received_at = datetime.now(UTC)
        self._source(source).received.inc()
        result = await validate(
            topic, raw, self.directory, received_at, self.settings.mqtt_max_payload, source,
            self._max_future, self._max_past, self._local_tz,
        )
        if isinstance(result, Rejection):
            return await self._submit_rejection(source, topic, raw, result, received_at)
        return result

    def claim(self, key: str, source: str) -> bool:
        """False for a duplicate (counted); `key` is the event's `identity`. Otherwise it counts
        as seen from now on: a copy arriving while this one is on its way is a duplicate too;
        `release` it if the event does not reach Kafka, so that a redelivery is not dropped."""
        if self.recent.seen(key):
            self._source(source).duplicates.inc()
            return False
        self.recent.add(key)
        return True

    def release(self, key: str) -> None:
        self.recent.discard(key)

    async def submit_failure(
        self, source: str, topic: str, raw: bytes, exc: BaseException,
    ) -> Submitted:
        """Dead-letter a message whose processing raised (reason `ingest_error`): one message
        that meets a bug must not stall the ones behind it."""
        log.error("message could not be processed; dead-lettered", source=source, topic=topic,
                  exc_info=exc)
        return await self._submit_rejection(
            source, topic, raw, Rejection("ingest_error", describe(exc)), datetime.now(UTC))

    def produced(self, source: str, started: list[float]) -> None:
        """Count events acknowledged by Kafka, handed to the producer at `started`."""
        now = time.perf_counter()
        for t in started:
            metrics.PRODUCE_LATENCY.observe(now - t)
        self._source(source).accepted.inc(len(started))

    async def handle_zigbee(self, topic: str, raw: bytes) -> list[Outcome]:
        """One `zigbee2mqtt/<name>` state message -> its device messages (or one rejection)."""
        source = "zigbee2mqtt"
        received_at = datetime.now(UTC)
        self._source(source).received.inc()

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
        channel = "status" if zigbee.is_availability(topic) else "event"
        if channel == "status":  # online/offline, JSON or the legacy plain text
            status = zigbee.availability(raw, received_at)
            messages: list[dict[str, object]] | Rejection = \
                status if isinstance(status, Rejection) else [status]
        else:
            body = decode(raw)
            messages = body if isinstance(body, Rejection) else zigbee.translate(body, received_at)
        if isinstance(messages, Rejection):
            return await rejected(messages)
        events = [to_event(device, m, channel, received_at, source,
                           self._max_future, self._max_past, self._local_tz) for m in messages]
        failed = next((e for e in events if isinstance(e, Rejection)), None)
        if failed is not None:  # all or nothing: the dead letter keeps the original bytes
            return await rejected(failed)
        return [await (await self._submit_event(e, source)).wait()
                for e in events if not isinstance(e, Rejection)]

    async def _submit_event(self, event: CanonicalEvent, source: str) -> Submitted:
        event_id, key = event.event_id, identity(event)
        counters = self._source(source)
        if not self.claim(key, source):
            return Submitted(Outcome("duplicate", event_id))
        started = time.perf_counter()
        try:
            durable = await self.producer.send(
                kafka.EVENTS, event.model_dump_json().encode(), key=event.key())
        except BaseException:
            self.recent.discard(key)
            raise
        durable.add_done_callback(
            functools.partial(self._event_done, key, counters, started))
        return Submitted(Outcome("accepted", event_id), durable)

    def _event_done(
        self, key: str, counters: _SourceMetrics, started: float, fut: asyncio.Future[Any],
    ) -> None:
        if _failed(fut):  # not on Kafka: a redelivery must not count as a duplicate
            self.recent.discard(key)
            return
        metrics.PRODUCE_LATENCY.observe(time.perf_counter() - started)
        counters.accepted.inc()

    async def reject(
        self, source: str, topic: str, raw: bytes, why: Rejection, received_at: datetime,
    ) -> Outcome:
        """Dead-letter `raw` with the reason; returns once Kafka has the record."""
        return await (await self._submit_rejection(source, topic, raw, why, received_at)).wait()

    async def _submit_rejection(
        self, source: str, topic: str, raw: bytes, why: Rejection, received_at: datetime,
    ) -> Submitted:
        started = time.perf_counter()
        durable = await self.producer.send(
            kafka.DEADLETTER, dead_letter(source, topic, raw, why, received_at))
        durable.add_done_callback(
            functools.partial(self._rejection_done, source, topic, why, started))
        return Submitted(Outcome("rejected", reason=why.reason, detail=why.detail), durable)

    @staticmethod
    def _rejection_done(
        source: str, topic: str, why: Rejection, started: float, fut: asyncio.Future[Any],
    ) -> None:
        if _failed(fut):
            return
        metrics.PRODUCE_LATENCY.observe(time.perf_counter() - started)
        metrics.REJECTED.labels(source, why.reason).inc()
        log.warning("message rejected", source=source, topic=topic, reason=why.reason,
                    detail=why.detail[:300])


class KeyPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, like the Java client), remembering
    each key's partition index: hashing every event's elder id in pure Python is not free."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._default = DefaultPartitioner()
        self._index: dict[tuple[bytes, int], int] = {}
        self._capacity = capacity

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        count = len(all_partitions)
        index = self._index.get((key, count))
        if index is None:
            if len(self._index) >= self._capacity:
                self._index.clear()
            index = self._index[key, count] = (murmur2(key) & 0x7FFFFFFF) % count
        return all_partitions[index]


def subscriptions(settings: Settings) -> list[str]:
    """Device topics and Zigbee2MQTT, as MQTT 5 shared subscriptions when a group is set (an
    MQTT 3.1.1 broker such as amqtt has none: one worker then takes every message)."""
    group = settings.mqtt_shared_group if settings.mqtt_protocol == "5" else ""
    plain = [SUBSCRIPTION, zigbee.SUBSCRIPTION, zigbee.AVAILABILITY_SUBSCRIPTION]
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
    queues: list[asyncio.Queue[aiomqtt.Message]] = []
    client = _client(target, settings, queues)
    inbox = queues[0]
    # aiomqtt acknowledges on receipt; paho underneath can defer the PUBACK until Kafka has it.
    client._client.manual_ack_set(True)
    failed = asyncio.Event()
    pending: set[asyncio.Future[Any]] = set()
    batches = _EventBatches(ingest, client, pending, failed)
    # Received and not yet acknowledged: queued for the reader, or waiting for Kafka.
    metrics.IN_FLIGHT.set_function(lambda: inbox.qsize() + batches.waiting + len(pending)
                                   - batches.sent)
    async with client:
        for subscription in subscriptions(settings):
            granted = await client.subscribe(subscription, qos=1)
            if any(_refused(g) for g in granted or ()):
                # e.g. an ACL without zigbee2mqtt/#: the other subscriptions still work
                log.error("subscription refused by the broker", subscription=subscription)
        from foundation import observability  # /readyz: subscribed now

        observability.mark_subscribed()
        log.info("ingest subscribed", subscriptions=subscriptions(settings),
                 client_id=client_id(settings), mqtt=settings.mqtt_protocol)

        async def burst(first: aiomqtt.Message | None) -> None:
            """The messages queued up, validated and gathered into one batch per partition,
            handed to the producer (no task, no future, no Kafka round trip per message)."""
            try:
                await batches.start()
                if first is not None:
                    await _submit(client, ingest, batches, first, pending, failed)
                while inbox.qsize():
                    await _submit(client, ingest, batches, inbox.get_nowait(), pending, failed)
                await batches.flush()
            except Exception:
                # Left unacknowledged and the session is dropped: the broker redelivers them.
                log.exception("ingest failed; messages left unacknowledged")
                failed.set()

        async def read() -> None:
            # The event loop reads one MQTT packet per turn: under load the reader lets a few
            # turns pass and takes what has queued up in one go, rather than waking up for
            # every message. Each message is acknowledged when its own record is on Kafka.
            try:
                async for message in client.messages:  # waits when idle; raises on disconnect
                    await burst(message)
                    while inbox.qsize() and not failed.is_set():
                        await asyncio.sleep(BURST_WAIT_S)
                        await burst(None)
            finally:
                batches.abandon()  # never handed to Kafka: to be redelivered, not duplicates

        reader = asyncio.create_task(read())
        waits = [reader, asyncio.create_task(stop.wait()), asyncio.create_task(failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            if pending:  # finish what was received: graceful shutdown loses nothing
                await asyncio.gather(*pending, return_exceptions=True)
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]
        if failed.is_set():  # drop the session: the broker redelivers what is unacknowledged
            raise aiomqtt.MqttError("processing failed")


def _client(
    target: MqttTarget, settings: Settings, queues: list[asyncio.Queue[aiomqtt.Message]],
) -> aiomqtt.Client:
    """The consumer's client: a persistent session in MQTT 5 (or 3.1.1 for a broker without 5),
    its incoming queue remembered in `queues`."""
    # aiomqtt's own queue is unbounded: a full queue would silently discard messages, which
    # (never acknowledged) would stall in the broker until the next reconnect.
    common: dict[str, Any] = {
        "identifier": client_id(settings), "max_queued_incoming_messages": 0,
        "queue_type": _inbox_type(queues),
    }
    if settings.mqtt_protocol == "3.1.1":
        # clean_session=False keeps the queue while we are away, as the session expiry does
        # in MQTT 5; the broker's own in-flight window stands in for Receive Maximum.
        return target.client(protocol=aiomqtt.ProtocolVersion.V311, clean_session=False,
                             **common)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    # The broker sends at most this many unacknowledged messages; the rest wait in our session.
    props.ReceiveMaximum = MAX_IN_FLIGHT
    return target.client(protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                         properties=props, **common)


class _EventBatches:
    """Canonical events from MQTT on their way to Kafka. During one burst of messages they are
    gathered into one batch per partition, each handed to the producer whole (`send_batch`:
    no future and no callbacks per event); every message is acknowledged when the batch that
    holds its event is on Kafka. Per-elder order holds: one partition, batches in order."""

    def __init__(
        self, ingest: Ingest, client: aiomqtt.Client, pending: set[asyncio.Future[Any]],
        failed: asyncio.Event,
    ) -> None:
        self._ingest = ingest
        self._client = client
        self._pending = pending
        self._failed = failed
        self._producer = ingest.producer
        self._partitioner = KeyPartitioner()
        self._partitions: list[int] = []
        self._open: dict[int, tuple[BatchBuilder, list[_Waiting]]] = {}
        self.waiting = 0  # events gathered or handed over, not yet acknowledged
        self.sent = 0  # batches handed over, not yet acknowledged (counted in `pending`)

    async def start(self) -> None:
        """Before a burst: the topic's partitions, as the producer sees them."""
        # list(set), as the producer's own partitioning does: the same index, same partition
        self._partitions = list(await self._producer.partitions_for(kafka.EVENTS))

    async def add(self, event: CanonicalEvent, message: aiomqtt.Message, claimed: str) -> None:
        """Gather the `event` of `message`, claimed as `claimed`, into its partition's batch."""
        try:
            key = event.key()
            value = event.model_dump_json().encode()
            partition = self._partitioner(key, self._partitions, self._partitions)
            opened = self._open.get(partition)
            if opened is None:
                opened = self._open[partition] = (self._producer.create_batch(), [])
            if opened[0].append(timestamp=None, key=key, value=value) is None:  # full
                await self._send(partition)
                opened = self._open[partition] = (self._producer.create_batch(), [])
                if opened[0].append(timestamp=None, key=key, value=value) is None:
                    raise MessageSizeTooLargeError(f"event of {len(value)} bytes")
        except BaseException:
            self._ingest.release(claimed)
            raise
        opened[1].append(_Waiting(message, claimed, time.perf_counter()))
        self.waiting += 1

    async def flush(self) -> None:
        """After a burst: hand every gathered batch to the producer."""
        for partition in list(self._open):
            await self._send(partition)

    def abandon(self) -> None:
        """Forget the batches not handed over: their messages stay unacknowledged."""
        for _, waiting in self._open.values():
            for w in waiting:
                self._ingest.release(w.key)
            self.waiting -= len(waiting)
        self._open.clear()

    async def _send(self, partition: int) -> None:
        builder, waiting = self._open[partition]
        # Waits while this partition's previous batch is still queued in the producer (so
        # the next one grows meanwhile); cancelled or failed, the batch stays open: `abandon`.
        durable = await self._producer.send_batch(builder, kafka.EVENTS, partition=partition)
        del self._open[partition]
        self._pending.add(durable)
        self.sent += 1
        durable.add_done_callback(functools.partial(self._done, waiting))

    def _done(self, waiting: list[_Waiting], durable: asyncio.Future[Any]) -> None:
        self._pending.discard(durable)
        self.sent -= 1
        self.waiting -= len(waiting)
        error = None if durable.cancelled() else durable.exception()
        if durable.cancelled() or error is not None:
            for w in waiting:  # not on Kafka: a redelivery must not count as a duplicate
                self._ingest.release(w.key)
            # Left unacknowledged and the session is dropped: the broker redelivers them.
            log.error("ingest failed; messages left unacknowledged", messages=len(waiting),
                      exc_info=error)
            self._failed.set()
            return
        self._ingest.produced("mqtt", [w.started for w in waiting])
        ack = self._client._client.ack
        for w in waiting:
            if w.message.qos > 0:
                ack(w.message.mid, w.message.qos)


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A message whose event is in a batch: acknowledged once the batch is on Kafka."""

    message: aiomqtt.Message
    key: str  # the event's identity in the duplicate window
    started: float


def _inbox_type(
    made: list[asyncio.Queue[aiomqtt.Message]],
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's incoming queue, remembered in `made` so the reader can drain it in bursts."""

    class Inbox(asyncio.Queue[aiomqtt.Message]):
        def __init__(self, maxsize: int = 0) -> None:
            super().__init__(maxsize)
            made.append(self)

    return Inbox


def _refused(granted: int | ReasonCode) -> bool:
    """A SUBACK code >= 0x80 is a refusal (MQTT 5 reason code or 3.1.1 return code)."""
    return (granted.value if isinstance(granted, ReasonCode) else granted) >= 0x80


async def _submit(
    client: aiomqtt.Client, ingest: Ingest, batches: _EventBatches, message: aiomqtt.Message,
    pending: set[asyncio.Future[Any]], failed: asyncio.Event,
) -> None:
    """Hand one MQTT message to the producer; its PUBACK waits for Kafka's acknowledgement."""
    topic = message.topic.value
    payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
    durable: asyncio.Future[Any] | _Batched | None
    try:
        try:
            durable = await _process(ingest, batches, message, topic, bytes(payload))
        except Exception as exc:
            if is_transient(exc):
                raise
            # The message's own fault (or a bug it meets): dead-lettered, then acknowledged.
            source = "zigbee2mqtt" if topic.startswith(zigbee.TOPIC_PREFIX) else "mqtt"
            durable = (await ingest.submit_failure(source, topic, bytes(payload), exc)).durable
    except Exception:
        # Left unacknowledged and the session is dropped: the broker redelivers it on reconnect.
        log.exception("ingest failed; message left unacknowledged", topic=topic)
        failed.set()
        return
    if isinstance(durable, _Batched):
        return
    if durable is None:
        _acknowledge(client, message, None, failed, None)
        return
    pending.add(durable)
    durable.add_done_callback(functools.partial(_acknowledge, client, message, pending, failed))


class _Batched:
    """A message whose event is in a batch: the batch acknowledges it."""


_BATCHED = _Batched()


async def _process(
    ingest: Ingest, batches: _EventBatches, message: aiomqtt.Message, topic: str, raw: bytes,
) -> asyncio.Future[Any] | _Batched | None:
    """Validate one message and hand its record to Kafka: the future to acknowledge it on
    (None: acknowledge now; `_BATCHED`: its event batch acknowledges it)."""
    if message.retain:
        # Replayed on subscribe (live messages arrive with retain=0): old state, not news.
        metrics.RETAINED_SKIPPED.inc()
        return None
    if topic.startswith(zigbee.TOPIC_PREFIX):  # rare, several events: a task of its own
        return asyncio.ensure_future(_zigbee(ingest, topic, raw))
    checked = await ingest.check(topic, raw)
    if isinstance(checked, Submitted):
        return checked.durable
    key = identity(checked)
    if not ingest.claim(key, "mqtt"):
        return None
    await batches.add(checked, message, key)
    return _BATCHED


async def _zigbee(ingest: Ingest, topic: str, raw: bytes) -> None:
    """A Zigbee2MQTT message; dead-lettered if its processing raises (not an outage)."""
    try:
        await ingest.handle_zigbee(topic, raw)
    except Exception as exc:
        if is_transient(exc):
            raise
        await (await ingest.submit_failure("zigbee2mqtt", topic, raw, exc)).wait()


def _acknowledge(
    client: aiomqtt.Client, message: aiomqtt.Message, pending: set[asyncio.Future[Any]] | None,
    failed: asyncio.Event, durable: asyncio.Future[Any] | None,
) -> None:
    """PUBACK `message` once its record is on Kafka; otherwise leave it to be redelivered."""
    if durable is not None:
        if pending is not None:
            pending.discard(durable)
        error = None if durable.cancelled() else durable.exception()
        if durable.cancelled() or error is not None:
            # Left unacknowledged and the session is dropped: the broker redelivers it.
            log.error("ingest failed; message left unacknowledged", topic=message.topic.value,
                      exc_info=error)
            failed.set()
            return
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)
