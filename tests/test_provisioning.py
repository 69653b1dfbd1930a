"""Device provisioning against the real mosquitto: a provisioned device logs in with its own
credentials and may publish only under its own topic; readings it sends reach the history API."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiomqtt
import httpx

from foundation.config import Settings
from foundation.mqtt import MqttTarget
from tests.helpers import eventually


async def _provisioned(http: httpx.AsyncClient, kind: str = "bp_meter") -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    cid, eid = f"c-{tag}", f"E-{tag}"
    assert (await http.post("/api/v1/communities", json={"id": cid, "name": f"社区{tag}"})
            ).status_code == 201
    assert (await http.post("/api/v1/elders", json={"id": eid, "community_id": cid,
                                                    "name": "吴淑珍"})).status_code == 201
    r = await http.post("/api/v1/devices", json={"id": f"{eid}-bp", "kind": kind,
                                                 "elder_id": eid})
    assert r.status_code == 201, r.text
    device: dict[str, object] = r.json()
    return device


async def _can_log_in(settings: Settings, username: str, password: str) -> bool:
    target = MqttTarget.parse(settings.device_broker_url)
    try:
        async with aiomqtt.Client(target.host, target.port, username=username,
                                  password=password, timeout=5):
            return True
    except aiomqtt.MqttError:
        return False


def bp(msg_id: str, systolic: float, ts: float | None = None) -> bytes:
    return json.dumps({"msg_id": msg_id, "ts": ts or time.time(), "type": "bp",
                       "systolic": systolic, "diastolic": 80, "pulse": 70}).encode()


async def test_device_publishes_only_under_its_own_topic(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    device = await _provisioned(admin_http)
    login = device["mqtt"]
    assert isinstance(login, dict)
    user, password, prefix = login["username"], login["password"], login["topic_prefix"]
    assert prefix == f"eldercare/v1/{device['community_id']}/{device['id']}/"
    assert user == f"device.{device['id']}"
    await eventually(lambda: _can_log_in(platform, user, password), 10, "the device's login")
    assert not await _can_log_in(platform, user, password + "x")
    assert not await _can_log_in(platform, "", "")  # anonymous access is off

    target = MqttTarget.parse(platform.mqtt_url)
    devices = MqttTarget.parse(platform.device_broker_url)
    async with target.client(identifier=f"watch-{uuid.uuid4().hex}") as watcher:
        await watcher.subscribe("eldercare/v1/#", qos=1)
        async with aiomqtt.Client(devices.host, devices.port, username=user,
                                  password=password) as dev:
            # Mosquitto drops unauthorised publishes silently; had it passed them on, they
            # would reach the watcher before the allowed one sent after them.
            await dev.publish(f"eldercare/v1/{device['community_id']}/other-device/event",
                              b"forged", qos=1)
            await dev.publish(f"eldercare/v1/c-other/{device['id']}/event", b"forged", qos=1)
            bp_sent = bp("own-1", 150)
            await dev.publish(f"{prefix}event", bp_sent, qos=1)
            await dev.publish(f"{prefix}status", json.dumps(
                {"msg_id": "hb-1", "ts": time.time(), "online": True, "battery": 37}).encode(),
                qos=1)
        ours = {f"eldercare/v1/{device['community_id']}/other-device/event",
                f"eldercare/v1/c-other/{device['id']}/event", f"{prefix}event"}
        async for message in watcher.messages:
            if str(message.topic) in ours:  # other tests' devices publish meanwhile
                assert (str(message.topic), message.payload) == (f"{prefix}event", bp_sent)
                break

    # What the device sent is stored and shows in the charts' history API.
    device_id = str(device["id"])
    readings = await eventually(lambda: _readings(admin_http, f"/api/v1/devices/{device_id}"), 30,
                                "the reading in the history API")
    assert readings[0]["data"]["systolic"] == 150 and readings[0]["type"] == "bp"
    rollups = (await admin_http.get(f"/api/v1/elders/{device['elder_id']}/rollups",
                                    params={"type": "bp"})).json()["rollups"]
    assert rollups[0]["count"] == 1 and rollups[0]["max"]["systolic"] == 150
    # The registry shows the device as seen, online, with the battery it reported.
    shown = await eventually(lambda: _device_seen(admin_http, device_id), 30,
                             "the device's status")
    assert shown["battery"] == 37 and shown["status"] == "online"

    # Deactivated, the device can no longer log in.
    assert (await admin_http.post(f"/api/v1/devices/{device_id}/deactivate")).status_code == 200
    await eventually(lambda: _refused(platform, user, password), 10, "the login revoked")


async def _device_seen(http: httpx.AsyncClient, device_id: str) -> dict[str, object] | None:
    found: dict[str, object] = (await http.get(f"/api/v1/devices/{device_id}")).json()
    return found if found.get("last_seen") and found.get("battery") is not None else None


async def _refused(settings: Settings, user: str, password: str) -> bool:
    return not await _can_log_in(settings, user, password)


async def _readings(http: httpx.AsyncClient, base: str) -> list[dict[str, object]] | None:
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = await http.get(f"{base}/readings", params={"type": "bp", "since": since})
    assert r.status_code == 200, r.text
    found: list[dict[str, object]] = r.json()["readings"]
    return found or None


async def test_rotating_credentials_replaces_the_password(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    device = await _provisioned(admin_http)
    old = device["mqtt"]
    assert isinstance(old, dict)
    await eventually(lambda: _can_log_in(platform, old["username"], old["password"]), 10,
                     "the first login")
    r = await admin_http.post(f"/api/v1/devices/{device['id']}/credentials")
    assert r.status_code == 201
    new = r.json()
    await eventually(lambda: _can_log_in(platform, new["username"], new["password"]), 10,
                     "the new login")
    assert not await _can_log_in(platform, old["username"], old["password"])
