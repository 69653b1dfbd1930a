"""Waiting for what a user would see, without sleeping blindly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

if TYPE_CHECKING:
    from detectors.config import DetectorConfig
    from detectors.engine import Engine
    from foundation.config import Settings

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]] | Callable[[], T | None], timeout: float = 30.0,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def new_topic(bootstrap: str, partitions: int = 2, prefix: str = "test.events") -> str:
    """A fresh topic of its own for a test (the session's broker is shared); its name."""
    name = f"{prefix}.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions,
                                            replication_factor=1)])
    finally:
        await admin.close()
    return name


async def read_topic(
    bootstrap: str, topic: str, until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Read a topic from the beginning with a fresh group until `until(records)` holds. The
    topics are shared by the session's tests, and some put poison on them on purpose: records
    that are not JSON objects are left out."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest", fetch_max_wait_ms=20,
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}; got {len(records)} records")
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                for r in recs:
                    try:
                        value = json.loads(r.value)
                    except ValueError:
                        continue
                    if isinstance(value, dict):
                        records.append(value)
    finally:
        await consumer.stop()
    return records


@contextlib.asynccontextmanager
async def running_engine(settings: Settings, config: DetectorConfig,
                         detectors: list[Any] | None = None) -> AsyncIterator[Engine]:
    """A detectors engine running in this event loop until the block ends (then stopped as
    the service stops it: drained and checkpointed). `detectors`: default every one."""
    from detectors.engine import Engine

    eng = Engine(settings, config, detectors)
    stop = asyncio.Event()
    task = asyncio.create_task(eng.run(stop))
    await asyncio.wait_for(eng.ready.wait(), 30)
    try:
        yield eng
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
