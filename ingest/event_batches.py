"""Canonical events from MQTT gathered into one Kafka batch per partition, each MQTT message
acknowledged (PUBACK) once the batch that holds its event is on Kafka."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

import aiomqtt
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from foundation import kafka, logs
from foundation.contracts.events import CanonicalEvent
from ingest.intake import Ingest

log = logs.get(__name__)
_NO_HEADERS: list[tuple[str, bytes]] = []


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



class EventBatches:
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
        self._urgent: set[int] = set()  # partitions whose open batch holds an urgent event
        self._lane_partitions: list[int] = []
        # per partition of the open batches: the copies of their events on the priority lane
        self._copies: dict[int, list[asyncio.Future[Any]]] = {}
        self.waiting = 0  # events gathered or handed over, not yet acknowledged
        self.sent = 0  # batches handed over, not yet acknowledged (counted in `pending`)

    async def start(self) -> None:
        """Before a burst: the topic's partitions, as the producer sees them."""
        # list(set), as the producer's own partitioning does: the same index, same partition
        self._partitions = list(await self._producer.partitions_for(kafka.EVENTS))
        self._lane_partitions = list(await self._producer.partitions_for(kafka.URGENT))

    async def add(self, event: CanonicalEvent, message: aiomqtt.Message, claimed: str) -> None:
        """Gather the `event` of `message`, claimed as `claimed`, into its partition's batch."""
        try:
            key = event.key()
            value = event.model_dump_json().encode()
            on_lane = event.on_priority_lane
            headers = kafka.LANE_HEADERS if on_lane else _NO_HEADERS
            partition = self._partitioner(key, self._partitions, self._partitions)
            opened = self._open.get(partition)
            if opened is None:
                opened = self._open[partition] = (self._producer.create_batch(), [])
            if opened[0].append(timestamp=None, key=key, value=value, headers=headers) is None:
                await self._send(partition)  # full
                opened = self._open[partition] = (self._producer.create_batch(), [])
                if opened[0].append(timestamp=None, key=key, value=value,
                                    headers=headers) is None:
                    raise MessageSizeTooLargeError(f"event of {len(value)} bytes")
            if event.urgent:
                self._urgent.add(partition)
            if on_lane:  # acknowledged once both copies are on Kafka
                self._copies.setdefault(partition, []).append(await self._to_lane(key, value))
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
        self._urgent.clear()
        self._copies.clear()  # a copy already on the lane is read there twice: one alert id

    async def _to_lane(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        """Hand a copy of an urgent event to the priority lane (`kafka.URGENT`), in a batch of
        its own, closed: sent at once, no linger. Returns its durability future."""
        builder = self._producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value) is None:
            raise MessageSizeTooLargeError(f"event of {len(value)} bytes")
        builder.close()
        partition = self._partitioner(key, self._lane_partitions, self._lane_partitions)
        copy: asyncio.Future[Any] = await self._producer.send_batch(
            builder, kafka.URGENT, partition=partition)
        return copy

    async def _send(self, partition: int) -> None:
        builder, waiting = self._open[partition]
        if partition in self._urgent:
            # A closed batch is sent at once: the producer's linger (fuller requests under
            # load) is no wait for an SOS. (aiokafka lingers only on a batch still open.)
            builder.close()
        # Waits while this partition's previous batch is still queued in the producer (so
        # the next one grows meanwhile); cancelled or failed, the batch stays open: `abandon`.
        durable = await self._producer.send_batch(builder, kafka.EVENTS, partition=partition)
        del self._open[partition]
        self._urgent.discard(partition)
        copies = self._copies.pop(partition, [])
        if copies:  # a failed copy fails the batch: its messages are redelivered
            durable = asyncio.gather(durable, *copies)
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

