"""MQTT -> Kafka. A message is acknowledged to the broker (QoS 1 PUBACK) only after Kafka has
acknowledged the canonical event or its dead-letter record, so an ingest crash loses nothing:
the broker redelivers whatever was not acknowledged to the persistent session.

Two sessions per worker, each persistent, each with its own connection, queue and batches: the
main one (every device channel and Zigbee2MQTT) and the alarm one (`.../alarm`: SOS, fall flags,
fire and gas alarms). Under a flood of telemetry the main session's messages queue in the broker
and in the worker; an alarm arrives on a connection of its own and is handled on the next turn
of the event loop. The main session receives the alarms too: the copy that comes second is a
duplicate (`Ingest.seen`), so an alarm session that is down or behind loses nothing."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import aiomqtt

from foundation import logs
from foundation.config import Settings
from foundation.faults import is_transient
from foundation.mqtt import ALARM_CHANNEL, MqttTarget
from ingest import metrics, zigbee
from ingest.dedup import identity
from ingest.event_batches import EventBatches
from ingest.intake import Ingest, Submitted
from ingest.mqtt_session import (
    client_id,
    refused,
    session_client,
    session_protocol,
    subscriptions,
)

log = logs.get(__name__)

RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.1, 1.0
STEADY_S = 5.0  # a connection that lasted this long resets the reconnection backoff
ALARM_SUFFIX = f"/{ALARM_CHANNEL}"
BURST_WAIT_S = 0.001  # under load the reader lets messages gather this long between bursts


async def consume(ingest: Ingest, settings: Settings, stop: asyncio.Event) -> None:
    """Consume device messages until `stop` is set, on the main session and the alarm session
    (each reconnects on its own when the broker goes away)."""
    target = MqttTarget.parse(settings.mqtt_url)
    in_flight: dict[bool, Callable[[], int]] = {}
    metrics.IN_FLIGHT.set_function(lambda: sum(f() for f in list(in_flight.values())))
    sessions = [asyncio.create_task(_session(target, settings, ingest, stop, alarms, in_flight))
                for alarms in (True, False)]
    try:
        await asyncio.gather(*sessions)
    finally:
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)


async def _session(
    target: MqttTarget, settings: Settings, ingest: Ingest, stop: asyncio.Event, alarms: bool,
    in_flight: dict[bool, Callable[[], int]],
) -> None:
    """One session until `stop` is set; reconnects when the broker goes away.

    Every connection subscribes again, whether or not the broker still has ingest's session:
    a broker restarted without persistence (or without its database) knows no subscription,
    and what devices publish before ingest subscribes reaches nobody. So the first retry comes
    at once (RECONNECT_FIRST_S), then less often (up to RECONNECT_MAX_S)."""
    loop = asyncio.get_running_loop()
    delay = RECONNECT_FIRST_S
    while not stop.is_set():
        connected = loop.time()
        try:
            await _consume(target, settings, ingest, stop, alarms, in_flight)
        except aiomqtt.MqttError as exc:
            if loop.time() - connected > STEADY_S:  # it was running: a fresh outage
                delay = RECONNECT_FIRST_S
            log.warning("mqtt connection lost; reconnecting", error=str(exc), retry_in_s=delay,
                        session="alarms" if alarms else "main")
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)


async def _consume(
    target: MqttTarget, settings: Settings, ingest: Ingest, stop: asyncio.Event, alarms: bool,
    in_flight: dict[bool, Callable[[], int]],
) -> None:
    queues: list[asyncio.Queue[aiomqtt.Message]] = []
    client = session_client(target, settings, queues, alarms)
    inbox = queues[0]
    # aiomqtt acknowledges on receipt; paho underneath can defer the PUBACK until Kafka has it.
    client._client.manual_ack_set(True)
    failed = asyncio.Event()
    pending: set[asyncio.Future[Any]] = set()
    batches = EventBatches(ingest, client, pending, failed)
    # Received and not yet acknowledged: queued for the reader, or waiting for Kafka.
    in_flight[alarms] = lambda: inbox.qsize() + batches.waiting + len(pending) - batches.sent
    async with client:
        for subscription in subscriptions(settings, alarms):
            granted = await client.subscribe(subscription, qos=1)
            if any(refused(g) for g in granted or ()):
                # e.g. an ACL without zigbee2mqtt/#: the other subscriptions still work
                log.error("subscription refused by the broker", subscription=subscription)
        from foundation import observability  # /readyz: subscribed now

        if alarms:  # /readyz follows the main session, which receives the alarms too
            log.info("ingest alarm session subscribed", subscriptions=subscriptions(settings, True),
                     client_id=client_id(settings, True))
        else:
            observability.mark_subscribed()
            log.info("ingest subscribed", subscriptions=subscriptions(settings),
                     client_id=client_id(settings), mqtt=session_protocol(settings))

        async def burst(first: aiomqtt.Message | None) -> None:
            """The messages queued up, validated and gathered into one batch per partition,
            handed to the producer (no task, no future, no Kafka round trip per message)."""
            try:
                await batches.start()
                if first is not None:
                    await _submit(client, ingest, batches, first, pending, failed, alarms)
                while inbox.qsize():
                    await _submit(client, ingest, batches, inbox.get_nowait(), pending, failed,
                                  alarms)
                await batches.flush()
            except Exception:
                # Left unacknowledged and the session is dropped: the broker redelivers them.
                log.exception("ingest failed; messages left unacknowledged")
                failed.set()

        async def read() -> None:
            # The event loop reads one MQTT packet per turn: under load the reader lets a few
            # turns pass and takes what has queued up in one go, rather than waking up for
            # every message. Each message is acknowledged when its own record is on Kafka.
            try:
                async for message in client.messages:  # waits when idle; raises on disconnect
                    await burst(message)
                    while inbox.qsize() and not failed.is_set():
                        await asyncio.sleep(BURST_WAIT_S)
                        await burst(None)
            finally:
                batches.abandon()  # never handed to Kafka: to be redelivered, not duplicates

        reader = asyncio.create_task(read())
        waits = [reader, asyncio.create_task(stop.wait()), asyncio.create_task(failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            if pending:  # finish what was received: graceful shutdown loses nothing
                await asyncio.gather(*pending, return_exceptions=True)
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]
        if failed.is_set():  # drop the session: the broker redelivers what is unacknowledged
            raise aiomqtt.MqttError("processing failed")



async def _submit(
    client: aiomqtt.Client, ingest: Ingest, batches: EventBatches, message: aiomqtt.Message,
    pending: set[asyncio.Future[Any]], failed: asyncio.Event, alarms: bool,
) -> None:
    """Hand one MQTT message to the producer; its PUBACK waits for Kafka's acknowledgement."""
    topic = message.topic.value
    payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
    durable: asyncio.Future[Any] | _Batched | None
    try:
        try:
            durable = await _process(ingest, batches, message, topic, bytes(payload), alarms)
        except Exception as exc:
            if is_transient(exc):
                raise
            # The message's own fault (or a bug it meets): dead-lettered, then acknowledged.
            source = "zigbee2mqtt" if topic.startswith(zigbee.TOPIC_PREFIX) else "mqtt"
            durable = (await ingest.submit_failure(source, topic, bytes(payload), exc)).durable
    except Exception:
        # Left unacknowledged and the session is dropped: the broker redelivers it on reconnect.
        log.exception("ingest failed; message left unacknowledged", topic=topic)
        failed.set()
        return
    if isinstance(durable, _Batched):
        return
    if durable is None:
        _acknowledge(client, message, None, failed, None)
        return
    pending.add(durable)
    durable.add_done_callback(functools.partial(_acknowledge, client, message, pending, failed))


class _Batched:
    """A message whose event is in a batch: the batch acknowledges it."""


_BATCHED = _Batched()


async def _process(
    ingest: Ingest, batches: EventBatches, message: aiomqtt.Message, topic: str, raw: bytes,
    alarms: bool = False,
) -> asyncio.Future[Any] | _Batched | None:
    """Validate one message and hand its record to Kafka: the future to acknowledge it on
    (None: acknowledge now; `_BATCHED`: its event batch acknowledges it). `alarms`: read by
    the alarm session. An alarm reaches both sessions: the main session's copy is a safety net
    that dead-letters nothing (the alarm session, which gets its own copy, does), and whichever
    copy comes second is dropped without being counted as a duplicate."""
    if message.retain:
        # Replayed on subscribe (live messages arrive with retain=0): old state, not news.
        metrics.RETAINED_SKIPPED.inc()
        return None
    if topic.startswith(zigbee.TOPIC_PREFIX):  # rare, several events: a task of its own
        return asyncio.ensure_future(_zigbee(ingest, topic, raw))
    alarm = topic.endswith(ALARM_SUFFIX)
    checked = await ingest.check(topic, raw, dead_letter=alarms or not alarm)
    if checked is None:  # the main session's copy of a bad alarm: the alarm session's to tell
        return None
    if isinstance(checked, Submitted):
        return checked.durable
    key = identity(checked)
    if alarm and ingest.seen(key):  # the other session's copy came first
        return None
    if not ingest.claim(key, "mqtt"):
        return None
    await batches.add(checked, message, key)
    return _BATCHED


async def _zigbee(ingest: Ingest, topic: str, raw: bytes) -> None:
    """A Zigbee2MQTT message; dead-lettered if its processing raises (not an outage)."""
    try:
        await ingest.handle_zigbee(topic, raw)
    except Exception as exc:
        if is_transient(exc):
            raise
        await (await ingest.submit_failure("zigbee2mqtt", topic, raw, exc)).wait()


def _acknowledge(
    client: aiomqtt.Client, message: aiomqtt.Message, pending: set[asyncio.Future[Any]] | None,
    failed: asyncio.Event, durable: asyncio.Future[Any] | None,
) -> None:
    """PUBACK `message` once its record is on Kafka; otherwise leave it to be redelivered."""
    if durable is not None:
        if pending is not None:
            pending.discard(durable)
        error = None if durable.cancelled() else durable.exception()
        if durable.cancelled() or error is not None:
            # Left unacknowledged and the session is dropped: the broker redelivers it.
            log.error("ingest failed; message left unacknowledged", topic=message.topic.value,
                      exc_info=error)
            failed.set()
            return
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)
