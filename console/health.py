"""/healthz: 200 only when Kafka, MQTT and the database all answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from foundation import db, kafka, mqtt
from foundation.config import Settings


async def _probe(check: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(check, 4)
    except Exception as exc:
        return f"down: {type(exc).__name__}: {exc}"[:300]
    return "ok"


async def health(settings: Settings) -> dict[str, str]:
    kafka_s, mqtt_s, db_s = await asyncio.gather(
        _probe(kafka.check(settings.kafka_bootstrap, settings)),
        _probe(mqtt.check(settings.mqtt_url)),
        _probe(db.check(settings.database_url)),
    )
    return {"kafka": kafka_s, "mqtt": mqtt_s, "database": db_s}
