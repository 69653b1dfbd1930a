"""The dispatcher service: alerts from Kafka into incidents, and the step runners.

Any number of dispatcher processes may run against one database: alerts are spread over them by
the Kafka consumer group, steps by FOR UPDATE SKIP LOCKED. Each process holds an advisory lock
for its whole life, so the others can tell when it has died and recover its running steps."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import CommitFailedError
from psycopg_pool import PoolTimeout

from dispatcher.channels import Channel, DryRunChannel, TwilioChannel, channel_for
from dispatcher.claims import FirstStep
from dispatcher.incidents import AlertRecordedElsewhere, record_alert
from dispatcher.outage import DatabaseOutage
from dispatcher.recovery import Reconciling
from dispatcher.steps import RetryPolicy, StepRunner, new_worker_lock
from foundation import collector, db, kafka, logs, observability
from foundation.config import Settings
from foundation.contracts.alerts import Alert
from foundation.deadletter import Rejection, dead_letter
from foundation.faults import describe, is_transient
from foundation.group_consumer import GroupConsumer

log = logs.get(__name__)

GROUP = "eldercare-dispatcher"
RECOVER_EVERY_S = 2.0
# Every new or rescheduled step is announced (in process, or NOTIFY escalation_due), and the
# next due time is known: a resting worker looks by itself only this often, as a safety net.
IDLE_LOOK_S = 10.0
EXIT_DATABASE_LOST = 75  # EX_TEMPFAIL
DRAIN_S = 5.0
DRAIN_WAIT_MS = 200  # an empty fetch this long, once the detectors have stopped: drained


class Wakeup:
    """Wakes ONE resting step worker (a new incident, a NOTIFY from another process); a worker
    that claims a step wakes the next (`StepRunner.on_claim`), so side-by-side steps still run
    at once without every worker querying the database for each new step."""

    def __init__(self, n: int) -> None:
        self.events = [asyncio.Event() for _ in range(n)]
        self.resting: list[int] = []
        self.missed = False  # a wake-up came while every worker was busy
        self.stopping = False

    def stop(self) -> None:
        """Wake every resting worker, and let none rest or claim any more (the process is
        stopping: a worker resting up to IDLE_LOOK_S held up every stop of the stack)."""
        self.stopping = True
        for n in self.resting:
            self.events[n].set()

    def set(self) -> None:
        if self.resting:
            self.events[self.resting.pop(0)].set()
        else:
            self.missed = True

    async def rest(self, n: int, seconds: float) -> None:
        """Worker `n` waits until woken or `seconds` pass (no wait if a wake-up was missed)."""
        if self.stopping:
            return
        if self.missed:
            self.missed = False
            return
        self.events[n].clear()
        self.resting.append(n)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.events[n].wait(), seconds)
        finally:
            if n in self.resting:
                self.resting.remove(n)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop`. While the database cannot be reached (at start, or a failure before
    the lock's watch notices), the operator is told and alerts stay uncommitted in Kafka; once
    it answers, each waiting alert is recorded, and called, once."""
    channel = channel_for(settings)
    outage = DatabaseOutage(settings)
    # One consumer for the life of the process: it stays in the group (heartbeats) through a
    # database outage, and rewinds to its last commit afterwards.
    consumer, producer = kafka.consumer(settings, GROUP, kafka.ALERTS), kafka.producer(settings)
    await producer.start()
    # Joining the group takes a second or more (tansu holds a join about half the session
    # timeout): the step runners start meanwhile, so steps already due (the first calls of
    # alerts recorded just before a restart) are claimed at once.
    intake = _Intake(consumer, producer, asyncio.create_task(consumer.start()))
    try:
        while not stop.is_set():
            try:
                await _run(settings, stop, channel, intake)
            except* (psycopg.OperationalError, PoolTimeout, OSError) as group:
                await outage.wait_until_up(stop, str(group.exceptions[0]))
                await _rewind(intake)
            else:
                return
    finally:
        if not intake.joined.done():
            intake.joined.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await intake.joined
        await intake.producer.stop()
        # Leaving the group can hang in a rebalance; uncommitted alerts are redelivered anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(intake.consumer.stop(), 3.0)
        if isinstance(channel, TwilioChannel | DryRunChannel):
            await channel.close()


async def _rewind(intake: _Intake) -> None:
    """Back to the last committed offsets: alerts fetched but not recorded are read again."""
    consumer = await intake.ready()
    await consumer.place(consumer.assignment())


@dataclass
class _Intake:
    consumer: GroupConsumer
    producer: AIOKafkaProducer  # dead letters
    joined: asyncio.Task[None]  # the consumer's start: its group join

    async def ready(self) -> GroupConsumer:
        """The consumer, once it has joined its group (a caller cancelled meanwhile does not
        cancel the join)."""
        await asyncio.shield(self.joined)
        return self.consumer


async def _run(settings: Settings, stop: asyncio.Event, channel: Channel,
               intake: _Intake) -> None:
    lock = new_worker_lock()
    # The advisory lock lives as long as this connection, i.e. as long as this process.
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, connect_timeout=2,
    ) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s)", (lock,))
        pool = db.pool(settings.database_url, max_size=settings.dispatcher_workers + 3)
        await pool.open()
        retry = RetryPolicy(settings.dispatcher_retry_attempts, settings.dispatcher_retry_backoff_s,
                            settings.dispatcher_twilio_timeout_s)
        runner = StepRunner(pool, channel, settings.public_base_url, lock, retry,
                            settings.family_base_url, settings.link_secret,
                            settings.dispatcher_requests,
                            Reconciling(settings.dispatcher_reconcile_settle_s,
                                        settings.dispatcher_reconcile_retry_s,
                                        settings.dispatcher_twilio_timeout_s))
        workers = max(1, settings.dispatcher_workers)
        wake = Wakeup(workers)
        collector.settle()  # before the first alert
        runner.on_claim = runner.on_done = wake.set
        log.info("dispatcher started", worker_lock=lock, workers=workers,
                 requests=settings.dispatcher_requests, dry_run=channel.dry_run)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_or_exit(_intake(intake, pool, stop, wake, runner), stop,
                                        settings))
                for n in range(workers):
                    tg.create_task(_steps(runner, wake, n, recover=n == 0))
                tg.create_task(_or_exit(_listen(settings, stop, wake), stop, settings))
                tg.create_task(_hold(holder, stop, settings))
        finally:
            # Requests in flight settle their steps before the pool goes; one that outlives
            # this is recovered by another process (never repeated if Twilio may have it).
            await runner.drain(settings.dispatcher_twilio_timeout_s + 2.0)
            await pool.close()


async def _intake(intake: _Intake, pool: db.Pool, stop: asyncio.Event, wake: Wakeup,
                  runner: StepRunner) -> None:
    """Alerts -> incidents; the offset is committed only once the incidents are on disk. An
    incident's first step is started here at once; the workers take the others."""
    joining = asyncio.ensure_future(intake.ready())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({joining, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        joined = joining.done()
        if not joined:  # stopped (or cancelled) before the group was joined
            joining.cancel()
            wake.stop()
    if not joined:
        return  # nothing was read: nothing to drain
    consumer, producer = joining.result(), intake.producer
    observability.mark_subscribed("alerts")
    drain_until = 0.0  # set once the stop is seen
    loop = asyncio.get_running_loop()
    try:
        while True:
            draining = stop.is_set()
            if draining and not drain_until:  # stopping: first record what is already
                # on the topic (the embedded broker forgets it when it stops), for at most
                # DRAIN_S; the detectors have stopped, so one empty fetch means none is left
                drain_until = loop.time() + DRAIN_S
                kafka.keep_awake(consumer, DRAIN_S)
            # Records end the wait at once, and so does a stop (then the drain fetches).
            batches = await kafka.fetch(consumer, stop, DRAIN_WAIT_MS if draining else 500)
            if draining and (not batches or loop.time() > drain_until):
                break
            if not batches:
                continue
            async with pool.connection() as conn:
                for records in batches.values():
                    for record in records:
                        alert, why = _parse(record.value)
                        if alert is not None:
                            # A new incident's first step is claimed in its transaction.
                            first = runner.first_step()
                            try:
                                incident = await _record(conn, alert, first)
                            except Exception as exc:  # e.g. an elder the registry lacks
                                if is_transient(exc):  # uncommitted: redelivered after restart
                                    raise
                                log.error("alert cannot be recorded", alert_id=alert.alert_id,
                                          exc_info=exc)
                                why = describe(exc)
                            else:
                                log.info("alert recorded", alert_id=alert.alert_id,
                                         incident_id=str(incident) if incident else None)
                                if not await _start(runner, incident, first):
                                    wake.set()
                                continue
                        log.error("alert dead-lettered", reason=why)
                        await producer.send_and_wait(
                            kafka.DEADLETTER, _dead_letter(record.value or b"", why))
                # The incidents were committed without waiting for the disk (`_record`).
                await db.flush_commits(conn)
            try:
                await consumer.commit()
            except CommitFailedError as exc:
                # The group moved on under us (seen when the embedded broker was rolled just
                # after these alerts were read): they are read again, and recorded once by
                # their id. Letting it escape ended this loop for good while the process lived.
                log.warning("alert offsets not committed; they will be read again",
                            error=str(exc))
    finally:
        observability.mark_unsubscribed("alerts")  # /readyz: no alert is recorded now
        # The step workers ran the first calls of the alerts recorded while draining; now
        # they stop claiming (those still due are claimed by the next dispatcher at once).
        wake.stop()


async def _record(conn: db.Connection, alert: Alert, first: FirstStep | None = None
                  ) -> object:
    """`record_alert` in its own transaction, tried twice: a conflict with a concurrent writer
    passes on the second try, a fault of the alert itself fails both.

    The commit does not wait for the disk (`db.COMMIT_UNFLUSHED`): nothing outside the
    database acts on the incident before a synchronous commit has flushed it too, i.e. the
    first step's notification row (steps.py) or `db.flush_commits` before the alerts' offsets
    are committed. So the first call waits for one flush instead of two (plus the claim's)."""
    try:
        async with conn.transaction():
            await conn.execute(db.COMMIT_UNFLUSHED)
            return await record_alert(conn, alert, first)
    except AlertRecordedElsewhere:
        log.warning("alert already recorded for another elder; ignored", alert_id=alert.alert_id)
        return None
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("alert not recorded; trying once more", alert_id=alert.alert_id,
                    exc_info=exc)
    if first is not None:
        first.step = None  # what the failed try claimed was rolled back with it
    async with conn.transaction():
        await conn.execute(db.COMMIT_UNFLUSHED)
        return await record_alert(conn, alert, first)


async def _start(runner: StepRunner, incident: object, first: FirstStep | None) -> bool:
    """Start an incident's first due step at once: the one claimed in its transaction, or
    else one claimed now; False when none was started (the workers take it)."""
    if incident is None:
        return False
    if first is not None and first.step is not None:
        return await runner.start_claimed(first)
    return await runner.start_first(incident)


def _parse(value: bytes | None) -> tuple[Alert | None, str]:
    try:
        return Alert.model_validate_json(value or b""), ""
    except ValueError as exc:  # a bad record must not block every alert behind it
        return None, f"unreadable alert: {exc}"


def _dead_letter(raw: bytes, reason: str) -> bytes:
    """An alert the dispatcher cannot record, kept with the reason (ingest's record format)."""
    return dead_letter("dispatcher", kafka.ALERTS, raw, Rejection("alert_rejected", reason),
                       datetime.now(UTC))


async def _steps(runner: StepRunner, wake: Wakeup, n: int, recover: bool) -> None:
    loop = asyncio.get_running_loop()
    next_recover = 0.0
    while not wake.stopping:  # set once the intake has stopped (after its drain)
        try:
            if recover and loop.time() >= next_recover:
                next_recover = loop.time() + RECOVER_EVERY_S
                await runner.recover()
            await runner.run_due()
            pause = await runner.seconds_until_next(IDLE_LOOK_S)
        except (psycopg.OperationalError, OSError) as exc:
            log.warning("database unavailable; retrying", error=str(exc))
            pause = 1.0
        if recover:  # the first worker also looks for the steps of dead dispatchers
            pause = min(pause, max(0.0, next_recover - loop.time()))
        await wake.rest(n, pause)


async def _listen(settings: Settings, stop: asyncio.Event, wake: Wakeup) -> None:
    """Other dispatcher processes announce new steps with NOTIFY escalation_due. Ends as soon
    as `stop` is set; a lost connection raises."""
    async with await db.ListenConnection.connect(
        settings.database_url, autocommit=True
    ) as conn:
        await conn.execute("LISTEN escalation_due")

        async def relay() -> None:
            async for _ in conn.notifies():
                wake.set()

        relaying = asyncio.create_task(relay())
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({relaying, stopped},
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            relaying.cancel()
            stopped.cancel()
            await asyncio.gather(relaying, stopped, return_exceptions=True)
        if relaying in done:
            relaying.result()  # the connection was lost: raised for _or_exit


async def _hold(holder: psycopg.AsyncConnection[tuple[object, ...]], stop: asyncio.Event,
                settings: Settings) -> None:
    """If the lock's connection is lost, others may already recover our steps, and tearing
    down tasks blocked on dead connections can hang (seen: a minute): the process exits at
    once. The supervisor starts its warm spare, which waits for the database (and tells the
    operator), and Kafka redelivers every alert not yet recorded. Checked every second."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        try:
            await asyncio.wait_for(holder.execute("SELECT 1"), 2.0)
        except Exception as exc:
            await _database_lost(exc, stop, settings)


async def _or_exit(work: Coroutine[Any, Any, None], stop: asyncio.Event,
                   settings: Settings) -> None:
    """Run a task that needs the database; if the database is lost under it, exit at once."""
    try:
        await work
    except (psycopg.OperationalError, PoolTimeout) as exc:
        await _database_lost(exc, stop, settings)


async def _database_lost(exc: BaseException, stop: asyncio.Event, settings: Settings) -> None:
    """Tell the operator (a short outage may be over before the replacement looks; a long one
    is reported by the replacement too), then exit the process (see `_hold`)."""
    if stop.is_set():
        return
    log.error("database connection lost: exiting for a fresh start", error=str(exc))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(DatabaseOutage(settings).alarm_down(), 3.0)
    os._exit(EXIT_DATABASE_LOST)
