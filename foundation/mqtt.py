"""MQTT connection settings parsed from one URL: mqtt://user:pass@host:port, or
mqtts://user:pass@host:port?ca=/path/ca.crt for TLS (the CA defaults to the system's)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiomqtt
from paho.mqtt.client import DisconnectFlags
from paho.mqtt.reasoncodes import ReasonCode

from foundation.contracts.events import URGENT_TYPES

TOPIC_ROOT = "eldercare/v1"


PROTOCOLS = {"5": aiomqtt.ProtocolVersion.V5, "3.1.1": aiomqtt.ProtocolVersion.V311}


class Client(aiomqtt.Client):
    """aiomqtt's client, except that a connection the broker closes before its CONNACK fails
    the connection attempt at once. aiomqtt ignores that close and waits for its whole
    `timeout`: a broker killed or restarting mid-handshake held a device's press, or ingest's
    reconnect, for 5-10 s (issue 14's chaos runs), where any device's MQTT stack tries again at
    once."""

    def _on_disconnect(self, client: object, userdata: object, flags: DisconnectFlags,
                       reason_code: ReasonCode, properties: object = None) -> None:
        if not self._connected.done():
            self._connected.set_exception(aiomqtt.MqttError(
                f"the broker closed the connection before accepting it ({reason_code})"))
            self._connected.exception()  # awaited by __aenter__: no "never retrieved" log
            return
        super()._on_disconnect(client, userdata, flags, reason_code,  # type: ignore[arg-type]
                               properties)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool = False
    ca_file: str | None = None
    version: str = "5"  # the `mqtt_protocol` setting: "5" or "3.1.1"

    @classmethod
    def parse(cls, url: str, version: str = "5") -> MqttTarget:
        u = urlsplit(url if "://" in url else f"mqtt://{url}")
        tls = u.scheme == "mqtts"
        return cls(
            u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883),
            unquote(u.username) if u.username else None,
            unquote(u.password) if u.password else None,
            tls, next(iter(parse_qs(u.query).get("ca", [])), None), version,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of an mqtts:// target (the broker's certificate and name checked)."""
        return ssl.create_default_context(cafile=self.ca_file) if self.tls else None

    @property
    def protocol(self) -> aiomqtt.ProtocolVersion:
        """The MQTT version of this target, for clients that ask for a version explicitly."""
        return PROTOCOLS[self.version]

    def client(self, identifier: str | None = None, **kw: object) -> Client:
        return Client(
            self.host, self.port, username=self.username, password=self.password,
            identifier=identifier, tls_context=self.tls_context(),
            **kw,  # type: ignore[arg-type]
        )


# The channel a device publishes its alarms on (SOS, its own fall flag, smoke, gas, heat: the
# event types of `contracts.events.URGENT_TYPES`, an alarm that stopped sounding included).
# Ingest reads it on a session of its own, so an alarm never waits behind telemetry.
ALARM_CHANNEL = "alarm"


def event_topic(community_id: str, device_id: str) -> str:
    return f"{TOPIC_ROOT}/{community_id}/{device_id}/event"


def alarm_topic(community_id: str, device_id: str) -> str:
    return f"{TOPIC_ROOT}/{community_id}/{device_id}/{ALARM_CHANNEL}"


def topic_for(community_id: str, device_id: str, event_type: str) -> str:
    """Where a device publishes an event of this type: its alarm channel for an alarm, its
    event channel for everything else."""
    if event_type in URGENT_TYPES:
        return alarm_topic(community_id, device_id)
    return event_topic(community_id, device_id)


async def check(url: str) -> None:
    """Raise unless the broker accepts a connection."""
    async with MqttTarget.parse(url).client(timeout=2):
        await asyncio.sleep(0)
