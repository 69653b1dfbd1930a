"""Virtual devices: each one a real MQTT client with its own client id and credentials, a
retained "online" status, and a last will that marks it offline when it vanishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from foundation.mqtt import TOPIC_ROOT, MqttTarget, topic_for
from foundation.mqtt import Client as MqttClient
from simulators.payloads import MessageIds
from simulators.timeline import DeviceRef

Credentials = Callable[[str], tuple[str | None, str | None]]


def status_topic(community_id: str, device_id: str) -> str:
    return f"{TOPIC_ROOT}/{community_id}/{device_id}/status"


def shared_credentials(mqtt_url: str) -> Credentials:
    """Every device uses the user and password of `mqtt_url` (until per-device ones exist)."""
    target = MqttTarget.parse(mqtt_url)
    return lambda device_id: (target.username, target.password)


def file_credentials(path: Path) -> Credentials:
    """Per-device credentials from a JSON file {device_id: password}; the login is the
    device's (`device.<id>`)."""
    from devices.provisioning import device_username

    passwords: dict[str, str] = json.loads(path.read_text())
    return lambda device_id: (device_username(device_id), passwords[device_id])


def provisioned_credentials(database_url: str, auth_dir: str,
                            device_ids: list[str]) -> Credentials:
    """Issue each device its own password (as an installer would) and have the broker reload
    its password file; the device then logs in as `device.<id>` on the broker's device
    listener. Needs a platform-managed broker."""
    from devices import provisioning

    passwords: dict[str, str] = {}
    with psycopg.connect(database_url) as conn, conn.transaction():
        for device_id in device_ids:
            password, hashed = provisioning.new_credentials()
            conn.execute(provisioning.ISSUE_SQL, (device_id, hashed))
            passwords[device_id] = password
    provisioning.publish(database_url, auth_dir)
    return lambda device_id: (provisioning.device_username(device_id), passwords[device_id])


class VirtualDevice:
    """One device's MQTT session. `publish` stamps `msg_id` and `ts` (simulated time)."""

    def __init__(self, target: MqttTarget, ref: DeviceRef, credentials: Credentials,
                 ids: MessageIds | None = None, keepalive: int = 60) -> None:
        self.ref = ref
        self.ids = ids or MessageIds()
        self._target = target
        self._credentials = credentials
        self._keepalive = keepalive
        self._client: aiomqtt.Client | None = None
        self.sent = 0

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def connect(self, now: float) -> None:
        """Connect with a last will (retained "offline") and announce "online" (retained)."""
        user, password = self._credentials(self.ref.device_id)
        topic = status_topic(self.ref.community_id, self.ref.device_id)
        will = aiomqtt.Will(topic, json.dumps({"online": False}), qos=1, retain=True)
        for attempt in range(6):  # freshly provisioned logins work once the broker has reloaded
            client = MqttClient(
                self._target.host, self._target.port, username=user, password=password,
                identifier=f"sim-{self.ref.device_id}", protocol=self._target.protocol,
                will=will, keepalive=self._keepalive, timeout=10,
            )
            client.pending_calls_threshold = 1000  # the player pipelines publishes
            try:
                await client.__aenter__()
                break
            except aiomqtt.MqttError:
                if attempt == 5:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        self._client = client
        online = {"online": True, "msg_id": self.ids.next(), "ts": round(now, 3)}
        await client.publish(topic, json.dumps(online), qos=1, retain=True)

    async def publish(self, body: dict[str, Any], ts: float) -> None:
        """Publish one event at QoS 1; `body` has the type and fields, we add msg_id and ts."""
        if self._client is None:
            raise RuntimeError(f"{self.ref.device_id} is not connected")
        topic = topic_for(self.ref.community_id, self.ref.device_id, str(body.get("type", "")))
        await self._client.publish(topic, self.encode(body, ts), qos=1)
        self.sent += 1

    def encode(self, body: dict[str, Any], ts: float) -> bytes:
        """The exact bytes published for `body` at simulated time `ts`."""
        return json.dumps({"msg_id": self.ids.next(), "ts": round(ts, 3), **body}).encode()

    async def drop(self) -> None:
        """Vanish as a dead battery or a lost network would: the broker publishes the will.
        (MQTT 5 reason code 0x04, "disconnect with will message", avoids waiting a keepalive.)"""
        client, self._client = self._client, None
        if client is None:
            return
        client._client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
            await asyncio.wait_for(asyncio.shield(client._disconnected), 5)
        await client.__aexit__(None, None, None)

    async def close(self) -> None:
        """A clean goodbye: no will."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)
