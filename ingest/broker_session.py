"""Re-arming ingest's session in an MQTT broker that has just (re)started.

mosquitto (2.0) restores ingest's persistent session from its database, and delivers what was
queued in it before the stop, but it does not route messages published after the start to that
restored session until ingest itself connects again: a restored shared subscription
(`$share/...`) receives nothing, and a plain one nothing after a configuration reload (SIGHUP,
which device provisioning sends) or when its listener's port changed. The broker acknowledges
those messages to the devices all the same, so they were lost: issue 14 measured 22 of 50 SOS
presses lost in a whole-stack restart (the presses between the broker's start and ingest's
subscription) and 4 of 50 when mosquitto was killed (ingest reconnects a second later).

Connecting once as ingest, with its client id, session and subscriptions, right after the
broker starts makes the session live again: what devices publish from then on is queued for
ingest. Messages the broker sends on this connection are never acknowledged, so it sends them
again when ingest connects (at-least-once; ingest recognises duplicates)."""

from __future__ import annotations

import asyncio
import time

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from foundation import logs
from foundation.config import Settings
from foundation.mqtt import MqttTarget
from ingest.mqtt_session import SESSION_EXPIRY_S, client_id, session_protocol, subscriptions

log = logs.get(__name__)


async def rearm(settings: Settings, timeout_s: float = 10.0) -> None:
    """Connect as ingest worker `settings.ingest_worker`'s sessions (the main one, then the
    alarm one; session kept, nothing acknowledged), subscribe as ingest does, and leave: the
    broker queues for ingest from now on."""
    for alarms in (False, True):
        await _rearm(settings, alarms, timeout_s)


async def _rearm(settings: Settings, alarms: bool, timeout_s: float) -> None:
    target = MqttTarget.parse(settings.mqtt_url)
    identifier = client_id(settings, alarms)
    if session_protocol(settings) == "3.1.1":
        client = target.client(identifier=identifier, clean_session=False,
                               protocol=aiomqtt.ProtocolVersion.V311, timeout=timeout_s)
    else:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = 1  # at most one queued message in flight to us, unacknowledged
        client = target.client(identifier=identifier, clean_start=False,
                               properties=props, protocol=aiomqtt.ProtocolVersion.V5,
                               timeout=timeout_s)
    client._client.manual_ack_set(True)  # what arrives here stays unacknowledged: redelivered
    async with client:
        for subscription in subscriptions(settings, alarms):
            await client.subscribe(subscription, qos=1, timeout=timeout_s)
    log.info("ingest's broker session re-armed", client_id=identifier,
             subscriptions=subscriptions(settings, alarms))


def rearm_now(settings: Settings, within_s: float = 5.0) -> None:
    """`rearm` from synchronous code (the stack and its supervisor), tried again for
    `within_s` when the broker refuses or drops the connection (it may still be starting, or
    ingest's own reconnect took the session over): every failed attempt leaves devices' presses
    unrouted. A final failure is logged, not raised: ingest's own connection re-arms the
    session too, only later."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            asyncio.run(rearm(settings, timeout_s=max(0.5, deadline - time.monotonic())))
            return
        except Exception:
            if time.monotonic() >= deadline:
                log.exception("ingest's broker session not re-armed: presses made before "
                              "ingest reconnects may be lost")
                return
            log.warning("ingest's broker session not re-armed yet; trying again",
                        exc_info=True)
            time.sleep(0.05)
