"""The detector service: the consumer loop over canonical events.

A consumer group on `eldercare.events.v1` (keyed by elder, so an elder's devices share a
partition). On assignment a partition's elder states and checkpoint are loaded from PostgreSQL
and the consumer seeks to the checkpointed offset; on revocation the partition is checkpointed
and dropped. Event time comes from the devices: each partition has a watermark (newest event
time minus the allowed lateness) that a caught-up, idle partition advances by the wall clock, so
timers (silence, offline, check-in deadlines) fire without traffic. An elder whose events are
still arriving behind the watermark (a replay, buffered uploads) has timers judged at their own
newest event time until they stop. Timers also fire in event time: each time a partition's
watermark passes a multiple of `event_timer_s`, at that instant, so a replay played at any speed
has its silences judged when they happened, not at the next wall-clock sweep. After the
detectors or ingest were down, silence is re-armed from the resume time plus a grace period
(see `DetectorConfig`), for judgments at event times from the outage on: a replay or a buffered
upload of earlier days is judged as it happened.

The parts live in their own modules: `store` (per-elder state), `checkpoint` (state and offsets
in one transaction), `profiles` (registry), `suite` and the detector modules (pure logic)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from detectors import metrics
from detectors.base import Detector
from detectors.checkpoint import Checkpoint
from detectors.config import DetectorConfig
from detectors.immediate import immediate_alert
from detectors.profiles import ProfileCache, ProfileRecord
from detectors.store import PartitionState, load_partition
from detectors.suite import Suite, build
from foundation import collector, db, kafka, logs
from foundation.config import Settings
from foundation.contracts.alerts import Alert
from foundation.contracts.events import CanonicalEvent
from foundation.deadletter import Rejection, dead_letter
from foundation.faults import describe, is_transient

log = logs.get(__name__)

GROUP = "eldercare-detectors"
URGENT_GROUP = "eldercare-detectors-urgent"  # the priority lane's engine (detectors/service.py)
EVENT_TIMER_CATCHUP = timedelta(hours=2)  # most event-time sweeps fired after a gap in the data
# One elder's own sweeps after a gap in that elder's data (a silent morning is hours long).
ELDER_TIMER_CATCHUP = timedelta(hours=24)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
IDLE_WAIT_S = 0.5  # longest wait for records (a stop ends it at once)
# A caught-up engine checkpoints this soon after its last records (and its last checkpoint).
CAUGHT_UP_CHECKPOINT_S = 0.1


def _ceil(t: datetime, step: timedelta) -> datetime:
    """The first multiple of `step` (counted from 2000-01-01 UTC) at or after `t`."""
    return EPOCH + -((EPOCH - t) // step) * step


def detect(event: CanonicalEvent, now: datetime) -> list[Alert]:
    """The stateless verdict on one event (SOS, alarms, fall flag), kept for simple callers."""
    found = immediate_alert(event, now)
    return [found] if found else []


class Engine:
    """One detectors process: consumer loop, state store, timers and checkpoints."""

    def __init__(self, settings: Settings, config: DetectorConfig,
                 detectors: list[Detector[Any]] | None = None) -> None:
        """`detectors`: the ones this engine runs (default: every one, `suite.build`)."""
        self.settings = settings
        self.config = config
        self.group = config.group
        self.topic = config.topic
        self.suite = Suite(build(config) if detectors is None else detectors)
        self.pool = db.pool(settings.database_url, max_size=3)
        self.profiles = ProfileCache(self.pool, config.profile_ttl_s)
        self.checkpoint = Checkpoint(self.pool, self.suite, self.group, self.topic)
        self.parts: dict[int, PartitionState] = {}
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer = kafka.consumer(
            settings, self.group, fetch_max_wait_ms=config.fetch_max_wait_ms,
            probe_every_s=config.rest_probe_s)
        self.ready = asyncio.Event()  # set once partitions are assigned (for tests and tools)
        # Alerts are few and each one is someone waiting for help: sent without lingering.
        self.producer: AIOKafkaProducer = kafka.producer(settings, linger_ms=0)
        self.last_event_wall = time.monotonic()
        self.outage = False
        self._mirroring: asyncio.Task[None] | None = None
        self._mirrored_at = 0.0
        self._next_timer: dict[int, datetime] = {}  # partition -> next event-time sweep
        self._elder_next_timer: dict[str, datetime] = {}  # elder -> next sweep on its own clock
        # elder -> the latest event time its timers were judged at in this process: a sweep
        # at that time or before it has nothing to add (the partition's sweep and the elder's
        # own sweep often fall on the same instant). Forgotten when the partition is lost or
        # loaded again.
        self._judged: dict[str, datetime] = {}
        self._timer_step = timedelta(seconds=config.event_timer_s)
        # `profiles_ahead`: elders whose profile is read again behind the events, and the task
        # reading them (and, first, every elder of the registry)
        self._behind: set[str] = set()
        self._reading: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        # Thousands of elders' states are long-lived objects that the collector would walk
        # again and again while every event allocates a few short-lived ones: collect the
        # young generation less often and the old ones far less often (measured: -15 % CPU).
        gc.set_threshold(20_000, 50, 100)
        await self.pool.open()
        await self.producer.start()
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        await self.consumer.start()
        collector.settle()  # before the first event
        from foundation import observability  # /readyz: consuming now

        observability.mark_subscribed("events")
        log.info("detectors consuming", topic=self.topic, group=self.group,
                 detectors=[d.name for d in self.suite.detectors])
        last_tick = last_checkpoint = time.monotonic()
        unsaved = False  # records processed since the last checkpoint began
        try:
            while not stop.is_set():
                # Records (and a stop) end the wait at once; it only bounds how late the next
                # timer sweep or checkpoint is seen (an idle loop woke 10 times a second).
                due = min(last_tick + self.config.timer_tick_s,
                          last_checkpoint + self.config.checkpoint_interval_s)
                wait_s = min(IDLE_WAIT_S, max(0.0, due - time.monotonic()))
                if unsaved:
                    # The records may have been the last for a while: the caught-up checkpoint
                    # below is due CAUGHT_UP_CHECKPOINT_S after them, not a whole idle wait
                    # later (a roll of the embedded Kafka waits for it with ingest paused:
                    # the wait was 0.5-0.6 s of a 0.6-0.7 s pause in `bench soak --quick`).
                    wait_s = min(wait_s, CAUGHT_UP_CHECKPOINT_S)
                batches = await kafka.fetch(self.consumer, stop, round(wait_s * 1000))
                async with self.lock:
                    if batches:
                        await self._process(batches)
                        unsaved = True
                    now = time.monotonic()
                    if now - last_tick >= self.config.timer_tick_s:
                        last_tick = now
                        await self._tick()
                    if now - last_checkpoint >= self.config.checkpoint_interval_s:
                        last_checkpoint = now
                        # In the background: the next events are processed meanwhile.
                        unsaved = not self.checkpoint.begin(list(self.parts.values()))
                        self._mirror_offsets()
                    elif not batches and now - last_checkpoint >= CAUGHT_UP_CHECKPOINT_S:
                        # Caught up: what was processed is checkpointed now, not up to a
                        # second later (a roll of the embedded Kafka waits for it, with
                        # ingest paused). Nothing changed, nothing is written.
                        last_checkpoint = now
                        # (A checkpoint still in flight: tried again in CAUGHT_UP_CHECKPOINT_S.)
                        unsaved = not self.checkpoint.begin(list(self.parts.values()))
            await self._drain()
            async with self.lock:
                await self.checkpoint.commit(list(self.parts.values()))
            if self._mirroring is not None:
                self._mirroring.cancel()
        finally:
            if self._reading is not None:
                self._reading.cancel()
            self.checkpoint.abandon()  # only when failing: a clean stop has settled it
            await self.consumer.stop()
            await self.producer.stop()
            await self.pool.close()

    async def _drain(self, limit_s: float = 5.0) -> None:
        """Stopping: first process what is already on the topic (the supervisor stops ingest
        before us). The embedded broker forgets everything when it stops, so events left
        unread would be lost with it."""
        deadline = time.monotonic() + limit_s
        kafka.keep_awake(self.consumer, limit_s)  # a resting consumer would fetch nothing
        while time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=200)
            if not batches:
                return
            async with self.lock:
                await self._process(batches)

    # --- rebalance --------------------------------------------------------------------------
    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Load each new partition's state and seek to its checkpointed offset."""
        tps = list(tps)
        # Read on every assignment: a broker restarted under a running process is a new log.
        try:
            incarnation = await kafka.incarnation(self.settings)
            ends = await self.consumer.end_offsets(tps) if tps else {}
        except (KafkaError, TimeoutError) as exc:  # then only the offsets' own sanity is checked
            log.warning("broker incarnation unknown", error=str(exc))
            incarnation, ends = "", {}
        async with self.lock:
            wall = datetime.now(UTC)
            async with self.pool.connection() as conn:
                for tp in tps:
                    part = await load_partition(conn, self.suite, self.group, tp.topic,
                                                tp.partition, incarnation, ends.get(tp))
                    gap = timedelta(seconds=self.config.outage_gap_s)
                    if part.saved_at is not None and wall - part.saved_at > gap:
                        part.rearm(part.saved_at, self._rearm_time(wall))
                        log.info("partition resumed after an outage: silence re-armed",
                                 partition=tp.partition, down_since=part.saved_at.isoformat())
                    part.last_event_wall = time.monotonic()
                    self.parts[tp.partition] = part
                    for elder_id in part.elders:  # judged again from the loaded state on
                        self._judged.pop(elder_id, None)
                    if part.next_offset is not None:
                        self.consumer.seek(tp, part.next_offset)
                    else:  # never checkpointed, or offsets of a lost log: read it all (the
                        # group's offsets in Kafka are only a mirror for lag tools)
                        await self.consumer.seek_to_beginning(tp)
                        part.seeked_to = await self.consumer.position(tp)
                    log.info("partition assigned", partition=tp.partition,
                             elders=len(part.elders), offset=part.next_offset)
            if self.config.profiles_ahead:
                if self._reading is None:  # once per process: everyone, behind the events
                    self._reading = asyncio.create_task(self._read_profiles(everyone=True))
            else:
                await self.profiles.refresh([e for p in self.parts.values() for e in p.elders])
            self.ready.set()

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """Checkpoint the partitions we lose, then forget them."""
        async with self.lock:
            gone = [self.parts[tp.partition] for tp in tps if tp.partition in self.parts]
            await self.checkpoint.commit(gone)
            for p in gone:
                del self.parts[p.partition]
                for elder_id in p.elders:
                    self._judged.pop(elder_id, None)
                self.suite.forget(p.elders)

    # --- events -------------------------------------------------------------------------------
    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        lateness = timedelta(seconds=self.config.allowed_lateness_s)
        decoded: list[tuple[PartitionState, int, CanonicalEvent | None, bytes, bool]] = []
        for tp, records in batches.items():
            part = self.parts.get(tp.partition)
            if part is None or (records and self._stale(tp, part, records[0].offset)):
                continue
            done = part.next_offset
            for r in records:
                if done is not None and r.offset < done:
                    # Already in the state: records fetched before a rebalance that were
                    # read again from the checkpoint it seeked to.
                    continue
                try:
                    event: CanonicalEvent | None = CanonicalEvent.model_validate_json(r.value)
                except ValueError:
                    event = None
                decoded.append((part, r.offset, event, r.value, _on_lane(r.headers)))
        elders = {e.elder_id for _, _, e, _, _ in decoded if e is not None}
        await self._profiles_for(sorted(elders))
        wall = time.monotonic()
        if decoded and self.outage:
            self.outage = False
            now = datetime.now(UTC)
            since = now - timedelta(seconds=wall - self.last_event_wall)
            rearm = self._rearm_time(now)
            for p in self.parts.values():
                p.rearm(since, rearm)
            log.info("events are flowing again: silence re-armed", until=rearm.isoformat())
        self.last_event_wall = wall
        on_event, profiles = self.suite.on_event, self.profiles
        elder_due, part_due = self._elder_next_timer, self._next_timer
        counted = 0
        for part, offset, event, raw, on_lane in decoded:
            part.next_offset = offset + 1
            part.last_event_wall = wall
            if event is None:
                await self._dead_letter(raw, "unreadable_event", "not a canonical event")
                continue
            counted += 1
            elder_id, t = event.elder_id, event.event_time
            try:
                state = part.elders.get(elder_id)
                if state is None:
                    state = part.elders[elder_id] = self.suite.initial()
                clock = t - lateness
                due = elder_due.get(elder_id)
                if due is None or due <= clock:  # (checked here: most events have none due)
                    await self._elder_timers(part, elder_id, event.community_id, state, clock)
                profile = profiles.get(elder_id, event.community_id).at(t, part.rearm_for(t))
                _, alerts, changed = on_event(state, event, profile, on_lane)
            except Exception as exc:  # the detectors are pure: this event fails every time
                if is_transient(exc):
                    raise
                log.error("event failed in the detectors; dead-lettered",
                          event_id=event.event_id, exc_info=exc)
                await self._dead_letter(raw, "detector_error", describe(exc))
                continue
            if changed:
                part.dirty.add(elder_id)
            if alerts:
                await self._emit(alerts)
            if part.max_event_time is None or t > part.max_event_time:
                part.max_event_time = t
            seen = part.recent.get(elder_id)
            part.recent[elder_id] = (t if seen is None or t > seen[0] else seen[0], wall)
            # A replay crosses hours of event time in one batch: fire the timers the moment
            # event time passes each sweep, as a live stream would have.
            watermark = part.max_event_time - lateness
            due = part_due.get(part.partition)
            if due is None or due <= watermark:
                await self._event_time_timers(part, watermark)
        metrics.EVENTS.inc(counted)
        for part in {id(p): p for p, _, _, _, _ in decoded}.values():
            if part.max_event_time is not None:
                part.advance(part.max_event_time - lateness)
        metrics.PROCESSING.observe(time.perf_counter() - started)

    async def _profiles_for(self, elder_ids: list[str]) -> None:
        """Make these elders' profiles current before they are judged; with `profiles_ahead`
        only those never read wait for the registry, the stale ones are read behind."""
        stale = self.profiles.stale(elder_ids)
        if not stale:
            return
        if not self.config.profiles_ahead:
            await self.profiles.refresh(stale)
            return
        never = [e for e in stale if not self.profiles.loaded(e)]
        self._behind.update(e for e in stale if self.profiles.loaded(e))
        if never:
            await self.profiles.refresh(never)
        if self._behind and (self._reading is None or self._reading.done()):
            self._reading = asyncio.create_task(self._read_profiles())

    async def _read_profiles(self, everyone: bool = False) -> None:
        """Read profiles behind the events (`profiles_ahead`): the whole registry first when
        `everyone`, then whatever `_profiles_for` found stale meanwhile. A failed read is
        logged; the stale profiles serve until the next event asks again."""
        try:
            if everyone:
                started = time.monotonic()
                n = await self.profiles.load_all()
                log.info("profiles read ahead", elders=n,
                         seconds=round(time.monotonic() - started, 2))
            while self._behind:
                ids = sorted(self._behind)
                self._behind.clear()
                await self.profiles.refresh(ids)
        except Exception as exc:
            log.warning("profiles not read ahead; read again when next needed", error=str(exc))

    def _stale(self, tp: TopicPartition, part: PartitionState, first: int) -> bool:
        """Whether a batch starting at offset `first` was fetched from where the consumer
        read before this partition's latest assignment (the rebalance ran while the batch
        waited for the engine's lock). Processed, it would move the partition past every
        record between the seek and `first`, which were then skipped as already processed:
        after a roll of the embedded Kafka, the old position pointed into the new log and
        SOS presses were lost that way. Such a batch is dropped and the partition read again
        from where this process expects it. The platform's topics are neither compacted
        nor transactional, so a batch starts at or below that offset; a real gap in a log
        is accepted the second time it is met."""
        expected = part.next_offset if part.next_offset is not None else part.seeked_to
        if expected is None or first <= expected:
            return False
        if part.gap == (expected, first):
            log.warning("gap in the log: reading on", partition=tp.partition,
                        expected=expected, found=first)
            return False
        part.gap = (expected, first)
        log.warning("records fetched before a rebalance dropped; reading again",
                    partition=tp.partition, expected=expected, found=first)
        self.consumer.seek(tp, expected)
        return True

    async def _tick(self) -> None:
        """Advance idle watermarks by the wall clock and fire every elder's timers."""
        wall_mono = time.monotonic()
        wall = datetime.now(UTC)
        quiet = self.config.outage_quiet_s
        if quiet > 0 and wall_mono - self.last_event_wall > quiet and not self.outage:
            self.outage = True
            log.warning("no events on any partition: ingest is presumed down, watermarks held")
        for part in self.parts.values():
            tp = TopicPartition(self.topic, part.partition)
            lag = self._lag(tp)
            metrics.LAG.labels(str(part.partition)).set(lag or 0)
            idle = wall_mono - part.last_event_wall >= self.config.idle_advance_s
            if idle and lag == 0 and not self.outage:
                part.advance(wall - timedelta(seconds=self.config.allowed_lateness_s))
            if part.watermark is None:
                continue
            await self._profiles_for(list(part.elders))
            self._forget_quiet(part, wall_mono)
            await self._fire(part, part.watermark)
        metrics.SWEEPS.inc()

    async def _fire(self, part: PartitionState, at: datetime) -> None:
        """Every elder's timers of this partition at event time `at` (an elder whose own
        events are still arriving behind it: at its newest event time)."""
        for elder_id, state in part.elders.items():
            seen = part.recent.get(elder_id)
            now = at if seen is None else min(at, seen[0])
            await self._timer(part, elder_id, state, now, self.profiles.get(elder_id))

    async def _timer(self, part: PartitionState, elder_id: str, state: Any, now: datetime,
                     record: ProfileRecord) -> bool:
        """One elder's timers at `now` (with its profile at `now`, made only when the elder
        was not judged at `now` or later already); False when they failed (logged and
        skipped: one elder's broken state must not stop everyone's timers, nor cost an
        event)."""
        judged = self._judged.get(elder_id)
        if judged is not None and judged >= now:
            return True
        try:
            _, alerts, changed = self.suite.on_timer(
                state, now, record.at(now, part.rearm_for(now)))
        except Exception:
            log.exception("timer failed for one elder; skipped", elder=elder_id)
            return False
        self._judged[elder_id] = now
        if changed:
            part.dirty.add(elder_id)
        if alerts:
            await self._emit(alerts)
        return True

    async def _event_time_timers(self, part: PartitionState, watermark: datetime) -> None:
        """Fire the timers at each multiple of `event_timer_s` the partition's event time has
        passed since the last one (at most two hours of them: after a longer gap in the data,
        say ingest down, the last two hours; a partition of 10,000 elders must not stall)."""
        step = self._timer_step
        if step <= timedelta(0):
            return
        due = self._next_timer.get(part.partition)
        if due is not None and due > watermark:
            return  # the common case: no sweep due yet
        if due is None or watermark - due > EVENT_TIMER_CATCHUP:
            due = _ceil(max(watermark - EVENT_TIMER_CATCHUP, _ceil(watermark, step) - step),
                        step)
        while due <= watermark:
            part.advance(due)
            await self._fire(part, due)
            due += step
        self._next_timer[part.partition] = due

    async def _elder_timers(self, part: PartitionState, elder_id: str, community_id: str,
                            state: Any, clock: datetime) -> None:
        """Fire one elder's timers at each sweep its own event time (`clock`, its newest event
        minus the allowed lateness) has passed, before its next event is applied. The
        partition's sweeps follow the partition's newest event: an elder replayed into a stack
        whose partition already runs at today's time would otherwise have its past silent
        mornings judged only at its newest event, when the elder is up again."""
        step = self._timer_step
        if step <= timedelta(0):
            return
        due = self._elder_next_timer.get(elder_id)
        if due is None or due > clock:
            if due is None:
                self._elder_next_timer[elder_id] = _ceil(clock, step)
            return
        if clock - due > ELDER_TIMER_CATCHUP:
            due = _ceil(clock - ELDER_TIMER_CATCHUP, step)
        profiles = self.profiles.get(elder_id, community_id)
        while due <= clock:
            if not await self._timer(part, elder_id, state, due, profiles):
                break
            due += step
        self._elder_next_timer[elder_id] = due

    def _forget_quiet(self, part: PartitionState, wall_mono: float) -> None:
        """Keep in `part.recent` only elders whose events are still arriving (within
        `idle_advance_s`). Their timers are judged at their newest event time when it is behind
        the watermark: a replay, or a watch uploading what it buffered offline, must not have a
        fall called before the rest of its own data (getting up, steps) has been read."""
        idle = self.config.idle_advance_s
        for elder_id in [e for e, (_, w) in part.recent.items() if wall_mono - w >= idle]:
            del part.recent[elder_id]

    def _lag(self, tp: TopicPartition) -> int | None:
        high = self.consumer.highwater(tp)
        part = self.parts.get(tp.partition)
        if high is None or part is None:
            return 0 if part is not None and part.next_offset is None else None
        position = part.next_offset if part.next_offset is not None else 0
        return max(0, int(high) - position)

    def _rearm_time(self, wall: datetime) -> datetime:
        return wall + timedelta(seconds=self.config.restart_grace_s)

    async def _emit(self, alerts: list[Alert]) -> None:
        now = datetime.now(UTC)
        for alert in alerts:
            alert = alert.model_copy(update={"detected_at": now})
            log.info("alert", alert_id=alert.alert_id, kind=alert.kind, elder=alert.elder_id,
                     severity=alert.severity.value)
            metrics.ALERTS.labels(alert.kind).inc()
            self.checkpoint.track(await self.producer.send(
                kafka.ALERTS, alert.model_dump_json().encode(), key=alert.key()))

    async def _dead_letter(self, raw: bytes, reason: str, detail: str) -> None:
        """Put aside an event the detectors cannot take, with the reason, and move on."""
        log.error("event dead-lettered", reason=reason, detail=detail[:300], value=raw[:200])
        record = dead_letter("detectors", self.topic, raw, Rejection(reason, detail),
                             datetime.now(UTC))
        self.checkpoint.track(await self.producer.send(kafka.DEADLETTER, record))

    def _mirror_offsets(self) -> None:
        """Mirror the checkpointed offsets into Kafka for lag tools: best effort, at most every
        10 s and in the background (a slow group coordinator must not hold up detection)."""
        if self._mirroring is not None and not self._mirroring.done():
            return
        if time.monotonic() - self._mirrored_at < 10:
            return
        offsets = {TopicPartition(self.topic, p.partition): p.saved_offset
                   for p in self.parts.values() if p.saved_offset is not None}
        if offsets:
            self._mirrored_at = time.monotonic()
            self._mirroring = asyncio.create_task(self._commit_kafka(offsets))

    async def _commit_kafka(self, offsets: dict[TopicPartition, int]) -> None:
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(self.consumer.commit(offsets), 10)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.engine.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.engine.assigned(assigned)


def _on_lane(headers: Any) -> bool:
    """Whether a record of the events topic carries an event that is on the priority lane too
    (`kafka.URGENT_LANE_HEADER`, set by ingest)."""
    return any(key == kafka.URGENT_LANE_HEADER for key, _ in headers or ())
