"""The foundation: an SOS press travels MQTT -> ingest -> Kafka -> detectors -> dispatcher ->
Twilio (the Prism mock) and the console's live stream."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import psycopg

from devices.registry import Community
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from tests.helpers import eventually
from tests.twilio_mock import TwilioMock


def sos(msg_id: str) -> bytes:
    return json.dumps({"msg_id": msg_id, "ts": time.time(), "type": "sos"}).encode()


async def collect_stream(
    client: httpx.AsyncClient, events: list[dict[str, Any]], ready: asyncio.Event,
) -> None:
    """Follow the console's live stream as a logged-in staff member (`client`)."""
    async with client.stream("GET", "/api/v1/stream", timeout=None) as response:
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
                if kind == "hello":
                    ready.set()
            elif line.startswith("data:") and kind == "timeline":
                events.append(json.loads(line.split(":", 1)[1]))


async def test_sos_calls_first_contact_texts_all_and_reaches_console(
    platform: Settings, community: Community, twilio: TwilioMock, admin_http: httpx.AsyncClient,
) -> None:
    elder = community.elders[0]
    button = next(d for d in elder.devices if d.kind == "sos_button")
    live: list[dict[str, Any]] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(collect_stream(admin_http, live, ready))
    await asyncio.wait_for(ready.wait(), 10)

    async with MqttTarget.parse(platform.mqtt_url).client() as client:
        await client.publish(event_topic(community.id, button.id), sos("press-1"), qos=1)

    first, second, third = elder.contacts
    await eventually(lambda: twilio.calls(first.phone), 30, "a call to contact 1")
    for c in elder.contacts:
        await eventually(lambda c=c: twilio.messages(c.phone), 30, f"an SMS to {c.name}")

    call = twilio.calls(first.phone)[0]
    assert call.status == 201
    assert call.form["From"] == [platform.twilio_from_number]
    twiml = call.form["Twiml"][0]
    assert '<Say voice="Polly.Zhiyu" language="cmn-CN">' in twiml and elder.name in twiml
    assert elder.address in twiml
    assert "位置：在家" in twiml  # a wall button: the press is at home
    assert "按1" in twiml
    sms = twilio.messages(second.phone)[0].form["Body"][0]
    assert elder.name in sms and elder.address in sms and "紧急呼叫" in sms
    assert "位置：在家" in sms and "/f/" in sms  # where, and the contact's family page
    assert not twilio.calls(second.phone), "contact 2 is called only later in the ladder"

    with psycopg.connect(platform.database_url) as conn:
        rows = conn.execute(
            "SELECT kind, severity, status FROM incidents WHERE elder_id = %s", (elder.id,)
        ).fetchall()
    assert rows == [("sos", "critical", "notifying")]

    await eventually(lambda: any(e["kind"] == "incident_opened" for e in live), 10, "live event")
    await eventually(lambda: sum(e["kind"] == "sms" for e in live) >= 3, 10, "live SMS events")
    listener.cancel()
    assert third.phone in {n.form["To"][0] for n in twilio.messages()}
