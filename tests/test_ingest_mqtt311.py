"""Ingest speaking MQTT 3.1.1 (to a broker without MQTT 5, such as the zero-install amqtt): its
persistent 3.1.1 session and the PUBACK sent only once Kafka has the event keep a SIGKILL
under a QoS 1 flood from losing any message the broker acknowledged to a device. Run against
mosquitto in 3.1.1 mode: amqtt itself forgets a QoS 1 message unacknowledged for 5 s (see
docs/testing.md), which no client can make up for."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from devices.registry import Community, save
from foundation import kafka
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from tests.conftest import make_community
from tests.helpers import eventually, read_topic
from tests.test_ingest_service import FLOOD_RATE, dev, metric, metrics_text, start_run


@pytest.mark.timeout(300)
async def test_sigkill_under_mqtt_311_loses_no_acknowledged_message(
    infra: Settings, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home: Community = make_community()
    save(infra.database_url, [home])
    run = start_run(infra, tmp_path_factory.mktemp("mqtt311"), mqtt_protocol="3.1.1",
                    mqtt_shared_group="")
    await run.ready()
    subscribed = json.loads(next(line for line in run.log.read_text().splitlines()
                                 if "ingest subscribed" in line))
    assert subscribed["mqtt"] == "3.1.1"
    assert subscribed["subscriptions"][0] == "eldercare/v1/+/+/+"  # plain: no $share in 3.1.1
    watch = dev(home, "smart_watch")
    topic = event_topic(home.id, watch)
    tag = uuid.uuid4().hex[:6]
    total, acked = 3000, []
    try:
        async with MqttTarget.parse(run.settings.mqtt_url).client(
                max_inflight_messages=500) as client:

            async def send(n: int) -> None:
                # Paced: the flood lasts total/FLOOD_RATE s however fast ingest is, so the kill
                # lands in the middle of it on an idle machine too.
                await asyncio.sleep(n / FLOOD_RATE)
                msg_id = f"k{tag}-{n}"
                await client.publish(topic, json.dumps(
                    {"msg_id": msg_id, "ts": time.time(), "type": "steps", "steps": n}), qos=1)
                acked.append(msg_id)  # the broker's PUBACK: the device may now forget it

            async def busy() -> float:
                n = metric(await metrics_text(run), "eldercare_ingest_accepted_total",
                           source="mqtt")
                return n if n >= 100 else 0.0

            flood = [asyncio.create_task(send(n)) for n in range(total)]
            before_kill = await eventually(busy, 60, "ingest to accept some of the flood")
            run.kill()
            await asyncio.gather(*flood)
        assert before_kill < total, "the kill came too late to prove anything"
        run.start()  # the same client id resumes the persistent session
        await run.ready()
        want = {f"{watch}/{m}" for m in acked}

        def have_all(rs: list[dict[str, Any]]) -> bool:
            return want <= {r.get("event_id") for r in rs}

        records = await read_topic(infra.kafka_bootstrap, kafka.EVENTS, have_all, timeout=90)
        got = {r["event_id"] for r in records if r.get("event_id") in want}
        assert len(acked) == total and got == want
    finally:
        run.stop()
