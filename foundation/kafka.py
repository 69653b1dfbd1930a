"""Kafka plumbing shared by every service: topic names, topic creation, client factories."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from foundation import logs
from foundation.config import Settings
from foundation.wakeup import WakingConsumer, WakingProducer

if TYPE_CHECKING:
    from foundation.group_consumer import GroupConsumer

log = logs.get(__name__)

EVENTS = "eldercare.events.v1"
# The priority lane: every event of an urgent type (SOS, fall flag, smoke, gas, heat) is also
# written here by ingest, partitioned like EVENTS (same key, same partition count). The
# detectors read it with a group of their own, so an SOS is not queued behind a backlog of
# telemetry in EVENTS (measured: 3 of 50 presses not called within 30 s at 10,000 msg/s).
URGENT = "eldercare.urgent.v1"
# The header that marks an EVENTS record whose event is also on URGENT: its own alert comes
# from the priority lane, not again from the main one.
URGENT_LANE_HEADER = "eldercare-urgent-lane"
# As aiokafka takes record headers (a list; it never modifies it).
LANE_HEADERS: list[tuple[str, bytes]] = [(URGENT_LANE_HEADER, b"1")]
ALERTS = "eldercare.alerts.v1"
DEADLETTER = "eldercare.deadletter.v1"
# One record at offset 0 names the broker incarnation that holds the platform's topics.
INCARNATION = "eldercare.incarnation.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics the platform needs, with explicit partition counts."""
    return [
        TopicSpec(EVENTS, settings.kafka_partitions),
        TopicSpec(URGENT, settings.kafka_partitions),
        TopicSpec(ALERTS, settings.alert_partitions),
        TopicSpec(DEADLETTER, 1),
        # Kept forever: its one record must outlive any retention of the data topics.
        TopicSpec(INCARNATION, 1, config={"retention.ms": "-1", "retention.bytes": "-1"}),
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
    """Create missing topics (existing ones are left as they are) and the incarnation marker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **security(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication,
                     topic_configs=s.config)
            for s in topic_specs(settings) if s.name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(new)
            log.info("topics created", topics=[t.name for t in new])
    finally:
        await admin.close()
    log.info("broker incarnation", incarnation=await incarnation(settings))


async def incarnation(settings: Settings, timeout_s: float = 10.0) -> str:
    """The id of the broker incarnation holding the platform's topics: the record at offset 0
    of `INCARNATION`, written here if the topic is empty. A broker that lost its topics (the
    embedded one keeps them in memory) gets a new id, so offsets stored outside Kafka (the
    detectors' checkpoints) can tell they belong to a log that no longer exists. Two writers
    racing both read offset 0, so every process agrees on the id."""
    tp = TopicPartition(INCARNATION, 0)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                              enable_auto_commit=False, fetch_max_wait_ms=5, **security(settings))
    await reader.start()
    try:
        reader.assign([tp])
        if (await reader.end_offsets([tp]))[tp] == 0:
            writer = producer(settings)
            await writer.start()
            try:
                await writer.send_and_wait(INCARNATION, uuid.uuid4().hex.encode(), partition=0)
            finally:
                await writer.stop()
        reader.seek(tp, 0)
        record = await asyncio.wait_for(reader.getone(tp), timeout_s)
        return bytes(record.value or b"").decode()
    finally:
        await reader.stop()


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas: an event is accepted only once durable.
    `overrides` are further AIOKafkaProducer options (e.g. a bigger `max_batch_size`)."""
    options: dict[str, Any] = {"acks": "all", "linger_ms": 1, "request_timeout_ms": 10_000}
    # Its records wake resting consumers (foundation/wakeup.py).
    return WakingProducer(database_url=settings.database_url,
                          bootstrap_servers=settings.kafka_bootstrap,
                          **{**options, **security(settings), **overrides})


def consumer_client_id_prefix(pid: int) -> str:
    """How the client ids (and so the group member ids) of process `pid`'s consumers begin:
    the supervisor removes a dead process's members from their groups by it."""
    return f"eldercare-pid{pid}-"


def consumer(settings: Settings, group: str, *topics: str, fetch_max_wait_ms: int = 5,
             **options: Any) -> GroupConsumer:
    """A group consumer with manual commits and low fetch latency (aiokafka waits 500 ms).
    The session timeout is short so that a killed member's partitions are handed to its
    replacement within seconds (the group waits for the dead member's session to expire).
    It rests while no record comes and the platform's producers wake it (foundation/wakeup.py),
    so an idle platform does not poll the broker 200 times a second per consumer (`options`:
    options of that, e.g. `probe_every_s`, or aiokafka options that replace these defaults).
    tansu answers a waiting fetch only when its wait is over, so `fetch_max_wait_ms` is also
    the longest a record waits for an awake consumer. Its commits say which broker incarnation
    they count in (foundation/group_consumer.py)."""
    from foundation.group_consumer import GroupConsumer

    defaults: dict[str, Any] = {
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
    }
    return GroupConsumer(
        *topics, settings=settings, database_url=settings.database_url,
        bootstrap_servers=settings.kafka_bootstrap, group_id=group,
        client_id=consumer_client_id_prefix(os.getpid()) + group,
        enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms, max_poll_records=500,
        # The background fetcher's longest sleep (aiokafka: 200 ms). It wakes at once for a
        # resumed partition, a fetch answered or a new assignment: this only bounds how often a
        # resting consumer's fetcher looks for nothing.
        consumer_timeout_ms=1000, **security(settings), **{**defaults, **options},
    )


# A consumer that nothing urgent waits for (the store's readings and dead-letter archive: alerts
# come from the detectors). Awake, its fetch waits 200 ms instead of 5 ms (tansu answers a
# waiting fetch only when its wait is over, so that is the longest a record waits for it, and
# each wait is one request); resting, it looks for records nobody announced every 5 s instead
# of every second (the topics it reads are written only by the platform's producers, which
# announce them). A backlog is fetched at once either way. Measured at idle with
# `eldercare bench idle`: see docs/benchmarks.md, "Idle, third pass".
BACKGROUND_FETCH_MAX_WAIT_MS = 200
BACKGROUND_PROBE_EVERY_S = 5.0
# Its group session is 6 s with a heartbeat every 2 s (or the platform's, if longer): a
# heartbeat is a request and ~5 wake-ups of the event loop, and at the platform's 400 ms they
# were ~70 % of an idle store's wake-ups. The price: a hung store holds its partitions 6 s,
# tansu holds its group joins ~3 s (half the session), and it learns of a rebalance up to 2 s
# later; a dead one is still evicted at once by the supervisor. 6 s is also Apache Kafka's
# default group.min.session.timeout.ms.
BACKGROUND_SESSION_TIMEOUT_MS = 6000
BACKGROUND_HEARTBEAT_INTERVAL_MS = 2000
# How long a background service's loop waits for records before it looks at its own
# housekeeping; records and a stop end the wait at once (`fetch`).
BACKGROUND_WAIT_MS = 5000


def background_consumer(settings: Settings, group: str, *topics: str) -> GroupConsumer:
    """A group consumer for a service nothing urgent waits for (see above)."""
    return consumer(
        settings, group, *topics, fetch_max_wait_ms=BACKGROUND_FETCH_MAX_WAIT_MS,
        probe_every_s=BACKGROUND_PROBE_EVERY_S,
        session_timeout_ms=max(settings.kafka_session_timeout_ms, BACKGROUND_SESSION_TIMEOUT_MS),
        heartbeat_interval_ms=max(settings.kafka_heartbeat_interval_ms,
                                  BACKGROUND_HEARTBEAT_INTERVAL_MS))


async def fetch(consumer: AIOKafkaConsumer, stop: asyncio.Event, timeout_ms: int,
                max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
    """`consumer.getmany`, whose wait for records also ends (empty) when `stop` is set: a
    stopping service does not sit out its poll wait (each stage of a stack's stop paid up to
    0.5 s). aiokafka hands records over only when getmany returns, so ending the wait loses
    none. Once `stop` is set, a plain getmany (a draining fetch)."""
    if stop.is_set():
        return dict(await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records))
    fetching = asyncio.ensure_future(consumer.getmany(timeout_ms=timeout_ms,
                                                      max_records=max_records))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({fetching, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        fetching.cancel()  # no-op once it has returned its records: they are returned below
    try:
        return dict(await fetching)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return {}


def keep_awake(consumer: AIOKafkaConsumer, seconds: float) -> None:
    """Before a draining fetch: a resting consumer (foundation/wakeup.py) has paused its
    partitions and would fetch nothing."""
    if isinstance(consumer, WakingConsumer):
        consumer.keep_awake(seconds)


async def check(bootstrap: str, settings: Settings | None = None) -> None:
    """Raise unless a broker answers a metadata request (with `settings`' TLS and SASL)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000,
                                **(security(settings) if settings else {}))
    await asyncio.wait_for(admin.start(), 3)
    try:
        await asyncio.wait_for(admin.list_topics(), 3)
    finally:
        await admin.close()
