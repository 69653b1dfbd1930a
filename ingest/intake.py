"""One device message's way in: validated, de-duplicated and handed to Kafka as its canonical
event, or dead-lettered with the reason. Shared by the MQTT and HTTP gateways."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer

from foundation import kafka, logs
from foundation.config import Settings
from foundation.contracts.events import CanonicalEvent
from foundation.deadletter import Rejection, dead_letter
from foundation.faults import describe
from ingest import metrics, zigbee
from ingest.dedup import RecentIds, identity
from ingest.directory import DeviceDirectory
from ingest.validate import check_device, decode, to_event, validate

log = logs.get(__name__)


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

    @overload
    async def check(self, topic: str, raw: bytes, source: str = "mqtt",
                    dead_letter: Literal[True] = True) -> CanonicalEvent | Submitted: ...

    @overload
    async def check(self, topic: str, raw: bytes, source: str = "mqtt",
                    dead_letter: bool = True) -> CanonicalEvent | Submitted | None: ...

    async def check(
        self, topic: str, raw: bytes, source: str = "mqtt", dead_letter: bool = True,
    ) -> CanonicalEvent | Submitted | None:
        """Validate one device message: its canonical event, for the caller to produce (after
        `claim`), or its dead-letter record already handed to the producer (`dead_letter`
        False: None, nothing written, for a copy another session dead-letters)."""
        received_at = datetime.now(UTC)
        self._source(source).received.inc()
        result = await validate(
            topic, raw, self.directory, received_at, self.settings.mqtt_max_payload, source,
            self._max_future, self._max_past, self._local_tz,
        )
        if isinstance(result, Rejection):
            if not dead_letter:
                return None
            return await self._submit_rejection(source, topic, raw, result, received_at)
        return result

    def seen(self, key: str) -> bool:
        """Whether the event `key` (its `identity`) was taken already; nothing counted."""
        return self.recent.seen(key)

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
            value, partition_key = event.model_dump_json().encode(), event.key()
            if event.on_priority_lane:  # acknowledged once both copies are on Kafka
                durable = asyncio.gather(
                    await self.producer.send(kafka.EVENTS, value, key=partition_key,
                                             headers=kafka.LANE_HEADERS),
                    await self.producer.send(kafka.URGENT, value, key=partition_key))
            else:
                durable = await self.producer.send(kafka.EVENTS, value, key=partition_key)
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
