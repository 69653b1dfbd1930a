"""Duplicates recognised by what they are: the same device, `msg_id` and event time.

A device whose message counter restarted (a battery change) sends old `msg_id`s again with new
times: those are new messages, not duplicates. The window is bounded in time and in size, and
is rebuilt at start from the tail of the events topic (`recall`): what ingest has produced is
what it must not produce again, so no other store is needed."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from foundation import kafka, logs
from foundation.config import Settings
from foundation.contracts.events import CanonicalEvent

log = logs.get(__name__)


def identity(event: CanonicalEvent) -> str:
    """What makes two messages the same one: device, `msg_id` (both in `event_id`) and event
    time. An event whose clock was rejected carries its receive time, so it is never taken
    for a duplicate: an SOS is never dropped on a guess."""
    return f"{event.event_id}@{event.event_time.isoformat()}"


class RecentIds:
    """Identities accepted within the last `window_s` seconds, at most `capacity` of them;
    `seen` is O(1)."""

    def __init__(self, capacity: int = 200_000, window_s: float = 3600.0) -> None:
        self._ids: OrderedDict[str, float] = OrderedDict()  # identity -> accepted at (epoch s)
        self._capacity = capacity
        self._window = window_s

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, key: str, now: float | None = None) -> bool:
        at = self._ids.get(key)
        if at is None:
            return False
        return (time.time() if now is None else now) - at <= self._window

    def add(self, key: str, at: float | None = None) -> None:
        self._ids[key] = time.time() if at is None else at
        self._ids.move_to_end(key)
        self._expire(self._ids[key])

    def _expire(self, now: float) -> None:
        ids = self._ids
        while len(ids) > self._capacity:
            ids.popitem(last=False)
        while ids:  # oldest first (insertion order is close to time order)
            oldest = next(iter(ids.values()))
            if now - oldest <= self._window:
                break
            ids.popitem(last=False)

    def discard(self, key: str) -> None:
        """Forget `key` (its produce failed, so a redelivery must not count as a duplicate)."""
        self._ids.pop(key, None)


async def recall(settings: Settings, recent: RecentIds, window_s: float) -> int:
    """Fill `recent` with the events produced in the last `window_s` seconds (read back from
    the events topic, at most the window's capacity per partition); returns how many."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
        fetch_max_wait_ms=5, request_timeout_ms=10_000, **kafka.security(settings))
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata
        tps = [TopicPartition(kafka.EVENTS, p)
               for p in sorted(consumer.partitions_for_topic(kafka.EVENTS) or [])]
        if not tps:
            return 0
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        per_partition = max(1, recent.capacity // len(tps))
        since = time.time() - window_s
        # Where the window starts (Kafka's time index), never more than the capacity back;
        # without an answer, the capacity alone bounds it (reading more is only slower).
        found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
        for tp in tps:
            at = found.get(tp)
            start = 0 if at is None else at.offset
            begins[tp] = max(begins[tp], ends[tp] - per_partition, start)
            consumer.seek(tp, begins[tp])
        count = 0
        left = {tp for tp in tps if ends[tp] > begins[tp]}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    count += _remember(recent, r.value, since)
                    if r.offset + 1 >= ends[tp]:
                        left.discard(tp)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        return count
    finally:
        await consumer.stop()


def _remember(recent: RecentIds, value: bytes | None, since: float) -> int:
    try:
        e = orjson.loads(value or b"")
        at = datetime.fromisoformat(e["received_at"]).timestamp()
        key = f"{e['event_id']}@{datetime.fromisoformat(e['event_time']).isoformat()}"
    except (ValueError, KeyError, TypeError):
        return 0  # not a canonical event: the detectors dead-letter it
    if at < since:
        return 0
    recent.add(key, at)
    return 1


async def recall_within(settings: Settings, recent: RecentIds, window_s: float,
                        timeout_s: float = 10.0) -> None:
    """`recall`, bounded in time: a slow broker delays ingest's start by at most `timeout_s`
    (then the window starts empty, and downstream idempotency catches the rare repeat)."""
    started = time.monotonic()
    try:
        count = await asyncio.wait_for(recall(settings, recent, window_s), timeout_s)
    except Exception:
        log.exception("recent events not read back; duplicate window starts empty")
        return
    log.info("duplicate window read back from the events topic", events=count,
             seconds=round(time.monotonic() - started, 2))
