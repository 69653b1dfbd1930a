"""Simulated daily life for the demo community: motion, cane steps, heartbeats, a morning blood
pressure, and an SOS press `sos_after_s` seconds after start so the demo shows an incident."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from typing import Any

from devices.demo import demo_population
from devices.registry import Elder
from foundation import logs
from foundation.mqtt import MqttTarget, alarm_topic, event_topic

log = logs.get(__name__)


def message(kind: str, **fields: Any) -> bytes:
    body = {"msg_id": uuid.uuid4().hex[:16], "ts": round(time.time(), 3), "type": kind, **fields}
    return json.dumps(body).encode()


async def run(mqtt_url: str, stop: asyncio.Event, sos_after_s: float = 30.0,
              tick_s: float = 5.0, seed: int = 1) -> None:
    rng = random.Random(seed)
    elders = [e for c in demo_population() for e in c.elders]
    sos_elder = elders[rng.randrange(len(elders))]
    started = time.monotonic()
    sos_sent = False
    async with MqttTarget.parse(mqtt_url).client(identifier="eldercare-demo-life") as client:
        log.info("demo life started", elders=len(elders), sos_in_s=sos_after_s)
        for e in elders:
            for d in e.devices:
                await client.publish(event_topic(e.community_id, d.id),
                                     message("heartbeat", battery=rng.randint(60, 100)), qos=1)
        while not stop.is_set():
            for e in rng.sample(elders, k=max(1, len(elders) // 4)):
                await _everyday(client, e, rng)
            if not sos_sent and time.monotonic() - started >= sos_after_s:
                sos = next(d for d in sos_elder.devices if d.kind == "sos_button")
                await client.publish(alarm_topic(sos_elder.community_id, sos.id), message("sos"),
                                     qos=1)
                log.info("demo: SOS pressed", elder=sos_elder.name, device=sos.id)
                sos_sent = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)


async def _everyday(client: Any, e: Elder, rng: random.Random) -> None:
    pick = rng.random()
    by_kind = {str(d.kind): d for d in e.devices}
    if pick < 0.5:
        d, body = by_kind["motion_sensor"], message("motion")
    elif pick < 0.85:
        d, body = by_kind["smart_cane"], message("steps", steps=rng.randint(5, 120))
    else:
        d, body = by_kind["bp_meter"], message(
            "bp", systolic=rng.randint(115, 150), diastolic=rng.randint(70, 92),
            pulse=rng.randint(60, 90))
    await client.publish(event_topic(e.community_id, d.id), body, qos=1)
