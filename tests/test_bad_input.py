"""Bad device input is dead-lettered with its reason and original bytes; ingest keeps going."""

from __future__ import annotations

import base64
import json
import time

from devices.registry import Community
from foundation import kafka
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from tests.helpers import eventually, read_topic
from tests.twilio_mock import TwilioMock


async def test_bad_messages_are_dead_lettered_and_a_later_sos_still_goes_through(
    platform: Settings, community: Community, twilio: TwilioMock,
) -> None:
    elder = community.elders[0]
    button = next(d for d in elder.devices if d.kind == "sos_button")
    meter = next(d for d in elder.devices if d.kind == "bp_meter")
    unknown = f"ghost-{community.id}"
    bad = [
        (event_topic(community.id, button.id), b'{"msg_id": "m1", "ts": 1, "type": "so',
         "malformed_json"),
        (event_topic(community.id, unknown), b'{"msg_id": "m2", "ts": 1, "type": "sos"}',
         "unknown_device"),
        (event_topic(community.id, meter.id),
         json.dumps({"msg_id": "m3", "ts": time.time(), "type": "bp", "systolic": "high"}).encode(),
         "schema_violation"),
        (event_topic(community.id, meter.id),
         json.dumps({"msg_id": "m4", "ts": time.time(), "type": "sos"}).encode(),
         "type_not_allowed"),
    ]
    async with MqttTarget.parse(platform.mqtt_url).client() as client:
        for topic, payload, _ in bad:
            await client.publish(topic, payload, qos=1)
        await client.publish(
            event_topic(community.id, button.id),
            json.dumps({"msg_id": "ok-1", "ts": time.time(), "type": "sos"}).encode(), qos=1,
        )

    ours = {t for t, _, _ in bad}
    records = await read_topic(
        platform.kafka_bootstrap, kafka.DEADLETTER,
        lambda rs: len([r for r in rs if r["topic"] in ours]) >= len(bad),
    )
    mine = [r for r in records if r["topic"] in ours]
    for topic, payload, reason in bad:
        match = [r for r in mine if r["topic"] == topic and base64.b64decode(r["payload_b64"])
                 == payload]
        assert match, f"no dead letter for {reason}"
        assert match[0]["reason"] == reason
        assert match[0]["detail"], "a dead letter says why"
        assert match[0]["source"] == "mqtt"
    schema = next(r for r in mine if r["reason"] == "schema_violation")
    assert "systolic" in schema["detail"]

    first = elder.contacts[0]
    await eventually(lambda: twilio.calls(first.phone), 30, "the valid SOS to reach Twilio")
