"""Kafka consumers that stop polling when nothing comes, and producers that wake them.

A consumer polling the broker every few milliseconds is what keeps an SOS fast, and what made an
idle platform burn a third of a core (each poll is a request the broker and the consumer both
handle). So a consumer that has seen no record for `ACTIVE_S` pauses its partitions; the
platform's producers announce new records with a PostgreSQL NOTIFY (`CHANNEL`, payload = the
topic, at most once per `WAKE_EVERY_S` per topic), and the consumer resumes at once.

Why nothing waits for a slow poll: a producer skips the NOTIFY only within `WAKE_EVERY_S` of the
previous one, whose record keeps every consumer awake for `ACTIVE_S` > `WAKE_EVERY_S` after it
arrives. Without the wake-up path (no database configured, the LISTEN connection lost) a
consumer never pauses; a paused one still asks the broker for its partitions' end offsets every
`PROBE_EVERY_S` and polls again when records wait (written by clients outside the platform, or
a lost notification), and fetches briefly every `FETCH_EVERY_LOOKS`-th time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from foundation import logs
from foundation.db import ListenConnection

log = logs.get(__name__)

CHANNEL = "eldercare_records"
# A consumer keeps polling this long after its last record or wake-up. Awake, it fetches ~100
# times a second, so this window is most of what one lone record (a device's heartbeat) costs.
ACTIVE_S = 0.4
# A producer notifies a topic at most this often. ACTIVE_S - WAKE_EVERY_S is the time an
# unannounced record has to reach the broker before the consumers it follows rest (0.35 s: the
# SOS p99 under 4,000 msg/s is ~0.23 s, and under load records keep every consumer awake).
WAKE_EVERY_S = 0.05
# A paused consumer still asks for its partitions' end offsets this often (by default: a
# consumer of a topic that only the platform's producers write may look less often).
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 2.0  # ... and polls if the broker does not answer within this
# Every FETCH_EVERY_LOOKS-th look is a short fetch instead (as every look once was): it does not
# trust the position, which a fetch corrects (e.g. past the end of a freshly rolled broker).
FETCH_EVERY_LOOKS = 5
FETCH_PROBE_S = 0.02  # about one fetch round trip
RELISTEN_S = 1.0  # wait before connecting the LISTEN connection again


class WakingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """An AIOKafkaConsumer that pauses its partitions while idle and resumes them on a NOTIFY
    of one of its topics (see the module docstring). Partitions the application paused itself
    stay paused."""

    def __init__(self, *topics: str, database_url: str = "", probe_every_s: float | None = None,
                 **options: Any) -> None:
        super().__init__(*topics, **options)
        self._wake_url = database_url
        # (PROBE_EVERY_S read now, not when this module was loaded: tests shorten it.)
        self._probe_every_s = PROBE_EVERY_S if probe_every_s is None else probe_every_s
        self._active_until = 0.0
        self._listening = False
        self._rested: set[TopicPartition] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await super().start()
        self.keep_awake()
        if self._wake_url:
            self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._rest())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await super().stop()

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> Any:
        batches = await super().getmany(*partitions, timeout_ms=timeout_ms,
                                        max_records=max_records)
        if batches:
            self.keep_awake()
        return batches

    @property
    def resting(self) -> bool:
        """Whether the consumer has paused its partitions for lack of records."""
        return bool(self._rested)

    def keep_awake(self, seconds: float = ACTIVE_S) -> None:
        """Poll (again) for at least `seconds`."""
        self._active_until = max(self._active_until, time.monotonic() + seconds)
        if self._rested:
            assigned = self.assignment()
            self.resume(*(tp for tp in self._rested if tp in assigned))
            self._rested = set()

    def _pause_all(self) -> None:
        if self._rested:
            return
        own = self.paused()
        self._rested = {tp for tp in self.assignment() if tp not in own}
        if self._rested:
            self.pause(*self._rested)

    async def _rest(self) -> None:
        """Pause when idle (only while the wake-up path works); look now and then anyway."""
        looks = 0
        while True:
            left = self._active_until - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)
                continue
            if not self._listening:
                self.keep_awake()
                continue
            self._pause_all()
            await asyncio.sleep(self._probe_every_s)
            if time.monotonic() >= self._active_until:
                looks += 1
                if looks % FETCH_EVERY_LOOKS == 0:
                    self.keep_awake(FETCH_PROBE_S)
                elif await self._unread():
                    self.keep_awake()

    async def _unread(self) -> bool:
        """Whether a resting partition has records past this consumer's position: one
        ListOffsets request (a few fetches cost the broker and the consumer more). True when
        it cannot tell (a position being reset, the broker not answering): poll then."""
        rested = [tp for tp in self._rested if tp in self.assignment()]
        if not rested:
            return False
        try:
            # One timeout for the whole look (one per partition was a timer and a task each:
            # ~7 wake-ups of the event loop per look of a 6-partition consumer).
            return await asyncio.wait_for(self._past_position(rested), PROBE_TIMEOUT_S)
        except Exception as exc:  # any doubt means: look by fetching
            log.debug("resting consumer's look failed; polling", error=str(exc))
            return True

    async def _past_position(self, tps: list[TopicPartition]) -> bool:
        ends = await self.end_offsets(tps)
        for tp in tps:
            # tansu 0.6 reports the last batch's first offset + 1 as the end (see
            # eldercare/stack/roll.py): still past the position while that batch is unread.
            if ends[tp] > await self.position(tp):
                return True
        return False

    async def _listen(self) -> None:
        while True:
            try:
                async with await ListenConnection.connect(
                    self._wake_url, autocommit=True, connect_timeout=5,
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening = True
                    async for note in conn.notifies():
                        if note.payload in self.subscription():
                            self.keep_awake()
            except (psycopg.Error, OSError) as exc:
                log.info("record wake-ups unavailable; polling without rest", error=str(exc))
            finally:
                self._listening = False
                self.keep_awake()
            await asyncio.sleep(RELISTEN_S)


class WakingProducer(AIOKafkaProducer):  # type: ignore[misc]
    """An AIOKafkaProducer that announces new records of a topic to resting consumers (a NOTIFY
    at most every `WAKE_EVERY_S` per topic, sent beside the record, never delaying it)."""

    def __init__(self, database_url: str = "", **options: Any) -> None:
        super().__init__(**options)
        self._wake_url = database_url
        self._last_wake: dict[str, float] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._connecting = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        future = await super().send(topic, *args, **kwargs)
        self._wake(topic)
        return future

    async def send_batch(self, batch: Any, topic: str, *args: Any, **kwargs: Any) -> Any:
        future = await super().send_batch(batch, topic, *args, **kwargs)
        self._wake(topic)
        return future

    def _wake(self, topic: str) -> None:
        now = time.monotonic()
        if self._wake_url and now - self._last_wake.get(topic, -WAKE_EVERY_S) >= WAKE_EVERY_S:
            self._last_wake[topic] = now
            task = asyncio.create_task(self._notify(topic))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _notify(self, topic: str) -> None:
        try:
            async with self._connecting:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._wake_url, autocommit=True, connect_timeout=2)
            await self._conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, topic))
        except (psycopg.Error, OSError) as exc:  # consumers look by themselves meanwhile
            self._last_wake.pop(topic, None)
            log.debug("record wake-up not sent", topic=topic, error=str(exc))
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
            self._conn = None

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            if self._pending:
                await asyncio.wait(self._pending, timeout=2.0)
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
                self._conn = None


class Announcements:
    """The topics the platform's producers announced (`NOTIFY CHANNEL`) since the last call,
    read without blocking over a LISTEN connection of its own: for a synchronous loop (the
    supervisor's) that only needs to know whether anything was written. `since_last()` is None
    whenever it cannot know (no database, the connection just made or lost): look anyway."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0

    def since_last(self) -> set[str] | None:
        """The announced topics since the previous call, or None if unknown."""
        if not self._url:
            return None
        try:
            if self._conn is None or self._conn.closed:
                if time.monotonic() < self._retry_at:
                    return None
                self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=2)
                self._conn.execute(f"LISTEN {CHANNEL}")
                return None  # what was written before the LISTEN is unknown
            return {note.payload for note in self._conn.notifies(timeout=0)}
        except (psycopg.Error, OSError) as exc:
            log.info("record announcements unavailable", error=str(exc))
            self.close()
            self._retry_at = time.monotonic() + RELISTEN_S
            return None

    def announce(self, topics: tuple[str, ...]) -> None:
        """Wake every resting consumer of `topics` for `ACTIVE_S`, as a producer would (best
        effort: without the database the consumers do not rest anyway)."""
        if not self._url:
            return
        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=2) as conn:
                for topic in topics:
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, topic))
        except (psycopg.Error, OSError) as exc:
            log.info("record wake-up not sent", error=str(exc))

    def close(self) -> None:
        """Drop the LISTEN connection (the next call connects again)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
