"""The dispatcher service: alerts from Kafka into incidents, and the step runner."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg

from detectors.alerts import Alert
from dispatcher.channels import TwilioChannel, channel_for
from dispatcher.incidents import record_alert
from dispatcher.steps import StepRunner
from eldercare import db, kafka, logs
from eldercare.config import Settings

log = logs.get(__name__)

GROUP = "eldercare-dispatcher"


async def run(settings: Settings, stop: asyncio.Event) -> None:
    pool = db.pool(settings.database_url, max_size=6)
    await pool.open()
    channel = channel_for(settings)
    wake = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_intake(settings, pool, stop, wake))
            tg.create_task(_steps(settings, StepRunner(pool, channel, settings.public_base_url),
                                  stop, wake))
            tg.create_task(_listen(settings, stop, wake))
    finally:
        if isinstance(channel, TwilioChannel):
            await channel.close()
        await pool.close()


async def _intake(settings: Settings, pool: db.Pool, stop: asyncio.Event,
                  wake: asyncio.Event) -> None:
    """Alerts -> incidents; the offset is committed only after the database transaction."""
    consumer = kafka.consumer(settings, GROUP, kafka.ALERTS)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            async with pool.connection() as conn:
                for records in batches.values():
                    for record in records:
                        alert = Alert.model_validate_json(record.value)
                        async with conn.transaction():
                            incident = await record_alert(conn, alert)
                        log.info("alert recorded", alert_id=alert.alert_id,
                                 incident_id=str(incident) if incident else None)
            await consumer.commit()
            wake.set()
    finally:
        await consumer.stop()


async def _steps(settings: Settings, runner: StepRunner, stop: asyncio.Event,
                 wake: asyncio.Event) -> None:
    while not stop.is_set():
        await runner.run_due()
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), 0.5)


async def _listen(settings: Settings, stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Other dispatcher processes announce new steps with NOTIFY escalation_due."""
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as conn:
        await conn.execute("LISTEN escalation_due")
        while not stop.is_set():
            async for _ in conn.notifies(timeout=1.0):
                wake.set()
