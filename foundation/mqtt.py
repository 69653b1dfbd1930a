"""MQTT connection settings parsed from one URL: mqtt://user:pass@host:port, or
mqtts://user:pass@host:port?ca=/path/ca.crt for TLS (the CA defaults to the system's)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiomqtt

TOPIC_ROOT = "eldercare/v1"


PROTOCOLS = {"5": aiomqtt.ProtocolVersion.V5, "3.1.1": aiomqtt.ProtocolVersion.V311}


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

    def client(self, identifier: str | None = None, **kw: object) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host, self.port, username=self.username, password=self.password,
            identifier=identifier, tls_context=self.tls_context(),
            **kw,  # type: ignore[arg-type]
        )


def event_topic(community_id: str, device_id: str) -> str:
    return f"{TOPIC_ROOT}/{community_id}/{device_id}/event"


async def check(url: str) -> None:
    """Raise unless the broker accepts a connection."""
    async with MqttTarget.parse(url).client(timeout=2):
        await asyncio.sleep(0)
