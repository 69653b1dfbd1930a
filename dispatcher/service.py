"""The dispatcher service: alerts from Kafka into incidents, and the step runners.

Any number of dispatcher processes may run against one database: alerts are spread over them by
the Kafka consumer group, steps by FOR UPDATE SKIP LOCKED. Each process holds an advisory lock
for its whole life, so the others can tell when it has died and recover its running steps."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import psycopg

from detectors.alerts import Alert
from dispatcher.channels import TwilioChannel, channel_for
from dispatcher.incidents import record_alert
from dispatcher.steps import RetryPolicy, StepRunner, new_worker_lock
from eldercare import db, kafka, logs, observability
from eldercare.config import Settings
from eldercare.faults import describe, is_transient
from ingest.deadletter import dead_letter
from ingest.validate import Rejection

log = logs.get(__name__)

GROUP = "eldercare-dispatcher"
RECOVER_EVERY_S = 2.0


class Wakeup:
    """Wakes every step worker at once (a new incident, a NOTIFY from another process)."""

    def __init__(self, n: int) -> None:
        self.events = [asyncio.Event() for _ in range(n)]

    def set(self) -> None:
        for e in self.events:
            e.set()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    lock = new_worker_lock()
    # The advisory lock lives as long as this connection, i.e. as long as this process.
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s)", (lock,))
        pool = db.pool(settings.database_url, max_size=settings.dispatcher_workers + 3)
        await pool.open()
        channel = channel_for(settings)
        retry = RetryPolicy(settings.dispatcher_retry_attempts, settings.dispatcher_retry_backoff_s,
                            settings.dispatcher_twilio_timeout_s)
        runner = StepRunner(pool, channel, settings.public_base_url, lock, retry,
                            settings.family_base_url, settings.link_secret)
        workers = max(1, settings.dispatcher_workers)
        wake = Wakeup(workers)
        log.info("dispatcher started", worker_lock=lock, workers=workers,
                 dry_run=channel.dry_run)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_intake(settings, pool, stop, wake))
                for n in range(workers):
                    tg.create_task(_steps(runner, stop, wake.events[n], recover=n == 0))
                tg.create_task(_listen(settings, stop, wake))
                tg.create_task(_hold(holder, stop))
        finally:
            if isinstance(channel, TwilioChannel):
                await channel.close()
            await pool.close()


async def _intake(settings: Settings, pool: db.Pool, stop: asyncio.Event, wake: Wakeup) -> None:
    """Alerts -> incidents; the offset is committed only after the database transaction."""
    consumer = kafka.consumer(settings, GROUP, kafka.ALERTS)
    producer = kafka.producer(settings)  # dead letters
    await producer.start()
    await consumer.start()
    observability.mark_subscribed("alerts")
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            async with pool.connection() as conn:
                for records in batches.values():
                    for record in records:
                        alert, why = _parse(record.value)
                        if alert is not None:
                            try:
                                incident = await _record(conn, alert)
                            except Exception as exc:  # e.g. an elder the registry lacks
                                if is_transient(exc):  # uncommitted: redelivered after restart
                                    raise
                                log.error("alert cannot be recorded", alert_id=alert.alert_id,
                                          exc_info=exc)
                                why = describe(exc)
                            else:
                                log.info("alert recorded", alert_id=alert.alert_id,
                                         incident_id=str(incident) if incident else None)
                                wake.set()
                                continue
                        log.error("alert dead-lettered", reason=why)
                        await producer.send_and_wait(
                            kafka.DEADLETTER, _dead_letter(record.value or b"", why))
            await consumer.commit()
    finally:
        observability.mark_unsubscribed("alerts")
        await producer.stop()
        # Leaving the group can hang in a rebalance; uncommitted alerts are redelivered anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer.stop(), 3.0)


async def _record(conn: db.Connection, alert: Alert) -> object:
    """`record_alert` in its own transaction, tried twice: a conflict with a concurrent writer
    passes on the second try, a fault of the alert itself fails both."""
    try:
        async with conn.transaction():
            return await record_alert(conn, alert)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("alert not recorded; trying once more", alert_id=alert.alert_id,
                    exc_info=exc)
    async with conn.transaction():
        return await record_alert(conn, alert)


def _parse(value: bytes | None) -> tuple[Alert | None, str]:
    try:
        return Alert.model_validate_json(value or b""), ""
    except ValueError as exc:  # a bad record must not block every alert behind it
        return None, f"unreadable alert: {exc}"


def _dead_letter(raw: bytes, reason: str) -> bytes:
    """An alert the dispatcher cannot record, kept with the reason (ingest's record format)."""
    return dead_letter("dispatcher", kafka.ALERTS, raw, Rejection("alert_rejected", reason),
                       datetime.now(UTC))


async def _steps(runner: StepRunner, stop: asyncio.Event, wake: asyncio.Event,
                 recover: bool) -> None:
    loop = asyncio.get_running_loop()
    next_recover = 0.0
    while not stop.is_set():
        try:
            if recover and loop.time() >= next_recover:
                next_recover = loop.time() + RECOVER_EVERY_S
                await runner.recover()
            wake.clear()
            await runner.run_due()
            pause = await runner.seconds_until_next(0.5)
        except (psycopg.OperationalError, OSError) as exc:
            log.warning("database unavailable; retrying", error=str(exc))
            pause = 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), pause)


async def _listen(settings: Settings, stop: asyncio.Event, wake: Wakeup) -> None:
    """Other dispatcher processes announce new steps with NOTIFY escalation_due."""
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as conn:
        await conn.execute("LISTEN escalation_due")
        while not stop.is_set():
            async for _ in conn.notifies(timeout=1.0):
                wake.set()


async def _hold(holder: psycopg.AsyncConnection[tuple[object, ...]], stop: asyncio.Event) -> None:
    """If the lock's connection is lost, others may already recover our steps: stop (the
    supervisor restarts the process with a new lock)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5.0)
        await holder.execute("SELECT 1")
