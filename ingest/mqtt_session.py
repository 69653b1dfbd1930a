"""Ingest's MQTT session: what it subscribes to, its stable client id, and the client that keeps
a persistent session in the broker (MQTT 3.1.1 by default, or 5; always 3.1.1 for a broker
without 5)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from foundation.config import Settings
from foundation.mqtt import ALARM_CHANNEL, TOPIC_ROOT, MqttTarget
from ingest import zigbee

SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/+"  # .../event and .../status; other channels are dead-lettered
# The alarm session's: SOS, fall flags, fire and gas alarms, read ahead of the telemetry (the
# main session receives them too, as a safety net: the copy that comes second is a duplicate).
ALARM_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/{ALARM_CHANNEL}"
MAX_IN_FLIGHT = 1000  # MQTT 5 Receive Maximum: messages received and not yet acknowledged
SESSION_EXPIRY_S = 7 * 86400  # the broker keeps our queue this long while no worker is connected


def session_protocol(settings: Settings) -> str:
    """The MQTT version of ingest's own session: `ingest_mqtt_session` ("3.1.1" or "5") when
    the broker speaks MQTT 5, else 3.1.1. A 3.1.1 session costs paho half the time per
    message (an MQTT 5 PUBLISH builds a `Properties` object, with its tables, per message)."""
    return settings.ingest_mqtt_session if settings.mqtt_protocol == "5" else "3.1.1"


def subscriptions(settings: Settings, alarms: bool = False) -> list[str]:
    """Device topics and Zigbee2MQTT (`alarms`: the alarm channel alone, for the alarm
    session), as shared subscriptions when a group is set and the broker speaks MQTT 5
    (mosquitto shares them with 3.1.1 sessions too); a 3.1.1-only broker such as amqtt has
    none: one worker then takes every message."""
    group = settings.mqtt_shared_group if settings.mqtt_protocol == "5" else ""
    plain = [ALARM_SUBSCRIPTION] if alarms else [
        SUBSCRIPTION, zigbee.SUBSCRIPTION, zigbee.AVAILABILITY_SUBSCRIPTION]
    return [f"$share/{group}/{t}" for t in plain] if group else plain


def client_id(settings: Settings, alarms: bool = False) -> str:
    """Stable per worker (and per session: main or alarms), so a restarted worker resumes its
    broker-side sessions."""
    base = f"eldercare-ingest-{settings.mqtt_shared_group or 'solo'}-{settings.ingest_worker}"
    return f"{base}-alarms" if alarms else base



def session_client(
    target: MqttTarget, settings: Settings, queues: list[asyncio.Queue[aiomqtt.Message]],
    alarms: bool = False,
) -> aiomqtt.Client:
    """The consumer's client (`alarms`: the alarm session's): a persistent session in MQTT
    3.1.1 or 5 (`session_protocol`), its incoming queue remembered in `queues`."""
    # aiomqtt's own queue is unbounded: a full queue would silently discard messages, which
    # (never acknowledged) would stall in the broker until the next reconnect.
    common: dict[str, Any] = {
        "identifier": client_id(settings, alarms), "max_queued_incoming_messages": 0,
        "queue_type": _inbox_type(queues),
    }
    if session_protocol(settings) == "3.1.1":
        # clean_session=False keeps the queue while we are away, as the session expiry does
        # in MQTT 5; the broker's own in-flight window (mosquitto's max_inflight_messages,
        # 1000 in deploy/ and the embedded broker) stands in for Receive Maximum.
        return target.client(protocol=aiomqtt.ProtocolVersion.V311, clean_session=False,
                             **common)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    # The broker sends at most this many unacknowledged messages; the rest wait in our session.
    props.ReceiveMaximum = MAX_IN_FLIGHT
    return target.client(protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                         properties=props, **common)



def _inbox_type(
    made: list[asyncio.Queue[aiomqtt.Message]],
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's incoming queue, remembered in `made` so the reader can drain it in bursts."""

    class Inbox(asyncio.Queue[aiomqtt.Message]):
        def __init__(self, maxsize: int = 0) -> None:
            super().__init__(maxsize)
            made.append(self)

    return Inbox


def refused(granted: int | ReasonCode) -> bool:
    """A SUBACK code >= 0x80 is a refusal (MQTT 5 reason code or 3.1.1 return code)."""
    return (granted.value if isinstance(granted, ReasonCode) else granted) >= 0x80

