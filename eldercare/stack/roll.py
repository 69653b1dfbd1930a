"""Rolling the embedded Kafka: a fresh tansu once its partitions fill up and every consumer has
caught up.

tansu 0.6 with memory storage serves reads normally up to ~10,000 stored batches per partition,
slows down past that and stalls from ~15,000; it keeps no retention and refuses DeleteRecords.
So once any partition of the platform's topics holds `kafka_roll_records` records (a record
count bounds the batch count from above), the supervisor:

1. pauses ingest (SIGSTOP: devices' messages wait, unacknowledged, in mosquitto) and waits,
   for at most `CATCH_UP_S`, until every consumer group has consumed up to the end (the
   detectors' offsets are their checkpoints in PostgreSQL, the dispatcher's and the store's
   their Kafka commits; the store's include the dead letters it archives into PostgreSQL);
2. pauses the detectors too (their timers may emit alerts) and checks once more that nothing is
   left unconsumed and nothing more arrived;
3. replaces tansu by a fresh process on the same port and re-creates the topics (a new broker
   incarnation, which the detectors' checkpoints recognise), then resumes the paused services.

If the groups do not catch up in time, everything is resumed and the roll is tried again later.
A produce request caught in flight fails and mosquitto redelivers the message (a duplicate,
recognised by ingest).

A look at the broker's size costs a client connection, a ListOffsets and a fetch of every
partition's last batch (for tansu and the supervisor alike), so the supervisor looks only when
something may have grown: every `kafka_roll_check_s` while the platform's producers announce
records of the watched topics (foundation/wakeup.py), otherwise every `QUIET_LOOK_S` (records
written by clients outside the platform carry no announcement), and at every check whenever the
announcements are unavailable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from foundation import deadletter_archive, group_consumer, kafka, logs
from foundation.config import Settings
from foundation.wakeup import Announcements

log = logs.get(__name__)

CATCH_UP_S = 10.0  # longest pause of ingest while waiting for the consumers
RETRY_S = 10.0  # after a put-off roll: let ingest run this long before pausing it again
POLL_S = 0.05
QUIET_LOOK_S = 30.0  # longest time between looks while nothing was announced
DETECTORS_GROUP = "eldercare-detectors"
URGENT_GROUP = "eldercare-detectors-urgent"  # the detectors' priority lane
# Groups whose offsets are their checkpoints in PostgreSQL, not Kafka commits.
CHECKPOINTED = (DETECTORS_GROUP, URGENT_GROUP)
# service -> the (consumer group, topic) pairs whose progress must reach the end before a
# roll. The store also archives the dead letters into PostgreSQL (foundation.deadletter_archive):
# nobody else reads them, and a roll would throw them away.
CONSUMERS: dict[str, tuple[tuple[str, str], ...]] = {
    "detectors": ((DETECTORS_GROUP, kafka.EVENTS), (URGENT_GROUP, kafka.URGENT)),
    "dispatcher": (("eldercare-dispatcher", kafka.ALERTS),),
    "store": (("eldercare-store", kafka.EVENTS), (deadletter_archive.GROUP, kafka.DEADLETTER)),
}
WATCHED = (kafka.EVENTS, kafka.URGENT, kafka.ALERTS, kafka.DEADLETTER)  # what fills it up


@dataclass
class RollLog:
    """What the supervisor's rolls did (the soak bench reads it)."""

    rolls: int = 0
    # records each topic held when it was rolled away, summed over the rolls
    rolled_records: dict[str, int] = field(default_factory=dict)
    windows: list[tuple[float, float]] = field(default_factory=list)  # epoch start, end
    attempts: int = 0


async def end_offsets(settings: Settings, topics: Iterable[str] = WATCHED,
                      timeout_s: float = 5.0) -> dict[TopicPartition, int]:
    """The end offset (last record's offset + 1) of every partition of `topics`.

    tansu 0.6 answers ListOffsets with the *first* offset of the last batch + 1 (a batch of 5
    records at offsets 11-15 gives 12, not 16), so the last batch of every partition is read
    to find its true end: trusting the broker's figure would roll away a batch nobody read."""
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                              enable_auto_commit=False, request_timeout_ms=5000,
                              fetch_max_wait_ms=5, **kafka.security(settings))
    await asyncio.wait_for(reader.start(), 10)
    try:
        await reader.topics()  # fetches the metadata partitions_for_topic reads
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(reader.partitions_for_topic(t) or [])]
        ends: dict[TopicPartition, int] = dict(await reader.end_offsets(parts)) if parts else {}
        unread = {tp for tp, end in ends.items() if end > 0}
        reader.assign(list(unread))
        for tp in unread:
            reader.seek(tp, ends[tp] - 1)
        deadline = time.monotonic() + timeout_s
        while unread:
            if time.monotonic() > deadline:
                raise TimeoutError(f"last batches of {sorted(map(str, unread))} not read")
            for tp, records in (await reader.getmany(*unread, timeout_ms=200)).items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
                    unread.discard(tp)
        return ends
    finally:
        await reader.stop()


def largest(ends: dict[TopicPartition, int]) -> int:
    """The most records any one partition holds."""
    return max(ends.values(), default=0)


async def _kafka_committed(settings: Settings, group: str, topic: str, incarnation: str,
                           ends: dict[TopicPartition, int]) -> dict[int, int]:
    """`group`'s committed offsets of `topic` that count in `incarnation`: a commit of
    positions in the log before the last roll, which reached the new broker late, is no sign
    of having read the new one (a roll trusting it threw away an alert nobody had read)."""
    found = await asyncio.wait_for(
        group_consumer.committed(settings, group, [tp for tp in ends if tp.topic == topic]), 10)
    return {tp.partition: meta.offset for tp, meta in found.items()
            if group_consumer.counts_in(meta, incarnation)}


def _checkpointed(settings: Settings, incarnation: str) -> dict[tuple[str, str], dict[int, int]]:
    """(group, topic) -> partition -> checkpointed next offset, of the detectors' groups
    (`CHECKPOINTED`) in this incarnation: one query for them all."""
    found: dict[tuple[str, str], dict[int, int]] = {}
    with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT group_id, topic, partition, next_offset FROM detector_checkpoints"
            " WHERE group_id = ANY(%s) AND incarnation = %s",
            (list(CHECKPOINTED), incarnation)).fetchall()
    for group, topic, p, o in rows:
        found.setdefault((str(group), str(topic)), {})[int(p)] = int(o)
    return found


async def behind(settings: Settings, services: Iterable[str], incarnation: str,
                 ends: dict[TopicPartition, int]) -> list[str]:
    """The consumers (`service:topic:partition`) that have not consumed up to `ends`."""
    late = []
    checkpoints: dict[tuple[str, str], dict[int, int]] | None = None
    for service in services:
        for group, topic in CONSUMERS.get(service, ()):
            if group in CHECKPOINTED:
                if checkpoints is None:
                    checkpoints = await asyncio.to_thread(_checkpointed, settings, incarnation)
                done = checkpoints.get((group, topic), {})
            else:
                done = await _kafka_committed(settings, group, topic, incarnation, ends)
            late += [f"{service}:{topic}:{p}" for p in unread(done, topic, ends)]
    return late


def unread(done: dict[int, int], topic: str, ends: dict[TopicPartition, int]) -> list[int]:
    """The partitions of `topic` not consumed up to `ends`, given each one's next offset to
    consume. Past the end counts as not consumed: a late commit of the log before the last
    roll, no sign of having read this one (the consumer commits over it once it has)."""
    return [tp.partition for tp, end in ends.items()
            if tp.topic == topic and end > 0 and done.get(tp.partition, 0) != end]


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class Roller:
    """Decides when the embedded Kafka is rolled and does it (see the module docstring).
    `pids(name)` gives a service's current process id (None if it is not running);
    `replace()` stops tansu and starts a fresh one on the same port, topics re-created."""

    def __init__(self, settings: Settings, services: list[str],
                 pids: Callable[[str], int | None], replace: Callable[[], None]) -> None:
        self.settings = settings
        self.services = services
        self.pids = pids
        self.replace = replace
        self.log = RollLog()
        self._next_look = time.monotonic() + settings.kafka_roll_check_s
        self._quiet_until = 0.0  # no look needed before this while nothing is announced
        self._grown = True  # records may have been written since the last look
        self._announcements = Announcements(settings.database_url)

    def due(self) -> bool:
        """Whether it is time to look at the broker's size: `kafka_roll_check_s` after the
        last look if records were announced since (or nobody can tell), else `QUIET_LOOK_S`."""
        if self.settings.kafka_roll_records <= 0:
            return False
        now = time.monotonic()
        if now < self._next_look:
            return False
        announced = self._announcements.since_last()
        if announced is None or announced.intersection(WATCHED):
            self._grown = True
        return self._grown or now >= self._quiet_until

    def check(self) -> bool:
        """Look at the broker; roll it when full and every consumer has caught up. True if
        it was rolled. Never raises: a failed look is logged and tried again later."""
        now = time.monotonic()
        self._next_look = now + self.settings.kafka_roll_check_s
        self._quiet_until = now + QUIET_LOOK_S
        self._grown = False
        try:
            ends = asyncio.run(end_offsets(self.settings))
            if largest(ends) < self.settings.kafka_roll_records:
                return False
            if not self._roll():
                self._next_look = time.monotonic() + RETRY_S
                self._grown = True  # still full: look again after RETRY_S, announced or not
                return False
            return True
        except Exception:
            log.exception("embedded kafka roll check failed")
            self._grown = True
            return False

    def _awake(self) -> None:
        """Keep every consumer polling through the roll, as they did before they could rest:
        with consumers resting during a roll, test_broker_roll lost SOS presses made around
        it (2 runs in 4 under load: the dispatcher skipped alerts written to the new broker;
        the exact race was not pinned down). Polling through it, 0 runs in 4."""
        self._announcements.announce(WATCHED)

    def close(self) -> None:
        """Release the announcements' database connection."""
        self._announcements.close()

    def _paused(self, names: tuple[str, ...]) -> list[int]:
        pids = [pid for n in names if n in self.services and (pid := self.pids(n)) is not None]
        _signal(pids, signal.SIGSTOP)
        return pids

    def _roll(self) -> bool:
        self.log.attempts += 1
        started = time.time()
        incarnation = asyncio.run(kafka.incarnation(self.settings))
        self._awake()
        producers = self._paused(("ingest", "demo-life"))
        detectors: list[int] = []
        try:
            ends = self._caught_up(incarnation)
            if ends is None:
                return False
            caught_up_s = time.time() - started
            self._awake()
            detectors = self._paused(("detectors",))
            # The detectors may have emitted an alert (a timer) as they were stopped.
            final = asyncio.run(end_offsets(self.settings))
            late = asyncio.run(behind(self.settings, self.services, incarnation, final))
            if final != ends or late:
                log.info("embedded kafka roll put off: new records", behind=late)
                return False
            replacing = time.time()
            self.replace()
            replaced_s = time.time() - replacing
        finally:
            self._awake()
            _signal(detectors + producers, signal.SIGCONT)
        self.log.rolls += 1
        for tp, end in ends.items():
            self.log.rolled_records[tp.topic] = self.log.rolled_records.get(tp.topic, 0) + end
        self.log.windows.append((started, time.time()))
        log.info("embedded kafka rolled", records=largest(ends), paused_s=round(
            time.time() - started, 2), caught_up_s=round(caught_up_s, 2),
            replaced_s=round(replaced_s, 2), rolls=self.log.rolls)
        return True

    def _caught_up(self, incarnation: str) -> dict[TopicPartition, int] | None:
        """With the producers paused: the end offsets once every consumer has reached them,
        or None after CATCH_UP_S. (A produce request still in flight when the producers were
        paused that lands later moves an end: the check after the detectors are paused sees
        it and puts the roll off.)"""
        deadline = time.monotonic() + CATCH_UP_S
        late: list[str] = []
        while time.monotonic() < deadline:
            ends = asyncio.run(end_offsets(self.settings))
            late = asyncio.run(behind(self.settings, self.services, incarnation, ends))
            if not late:
                return ends
            self._awake()
            time.sleep(POLL_S)
        log.warning("embedded kafka roll put off: consumers behind", behind=late[:10],
                    waited_s=CATCH_UP_S)
        return None
