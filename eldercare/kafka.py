"""Kafka plumbing shared by every service: topic names, topic creation, client factories."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from eldercare import logs
from eldercare.config import Settings

log = logs.get(__name__)

EVENTS = "eldercare.events.v1"
ALERTS = "eldercare.alerts.v1"
DEADLETTER = "eldercare.deadletter.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics the platform needs, with explicit partition counts."""
    return [
        TopicSpec(EVENTS, settings.kafka_partitions),
        TopicSpec(ALERTS, settings.alert_partitions),
        TopicSpec(DEADLETTER, 1),
    ]


def security(settings: Settings) -> dict[str, Any]:
    """The connection options every Kafka client of the platform uses: TLS and SASL as
    configured (`kafka_security_protocol`, `kafka_sasl_*`, `kafka_ca_file`)."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ca_file or None)
    if settings.kafka_security_protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


async def ensure_topics(settings: Settings) -> None:
    """Create missing topics; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **security(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication)
            for s in topic_specs(settings) if s.name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(new)
            log.info("topics created", topics=[t.name for t in new])
    finally:
        await admin.close()


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas: an event is accepted only once durable.
    `overrides` are further AIOKafkaProducer options (e.g. a bigger `max_batch_size`)."""
    options: dict[str, Any] = {"acks": "all", "linger_ms": 1, "request_timeout_ms": 10_000}
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                            **{**options, **security(settings), **overrides})


def consumer(settings: Settings, group: str, *topics: str) -> AIOKafkaConsumer:
    """A group consumer with manual commits and low fetch latency (aiokafka waits 500 ms)."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=5,
        max_poll_records=500, **security(settings),
    )


async def check(bootstrap: str, settings: Settings | None = None) -> None:
    """Raise unless a broker answers a metadata request (with `settings`' TLS and SASL)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000,
                                **(security(settings) if settings else {}))
    await asyncio.wait_for(admin.start(), 3)
    try:
        await asyncio.wait_for(admin.list_topics(), 3)
    finally:
        await admin.close()
