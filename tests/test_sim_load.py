"""`eldercare simulate`: the population's routines at a target rate; every message published is
received by a subscriber on the broker."""

from __future__ import annotations

import asyncio

from foundation.config import Settings
from foundation.mqtt import MqttTarget
from simulators.load import simulate
from tests.helpers import eventually


async def test_simulate_publishes_the_target_number_of_messages(infra: Settings) -> None:
    received = 0
    subscribed = asyncio.Event()

    async def count() -> None:
        nonlocal received
        async with MqttTarget.parse(infra.mqtt_url).client(identifier="load-counter") as c:
            await c.subscribe("eldercare/v1/+/+/event", qos=1)
            subscribed.set()
            async for m in c.messages:
                received += m.topic.value.startswith("eldercare/v1/c-sim-load7-")

    counter = asyncio.create_task(count())
    await asyncio.wait_for(subscribed.wait(), 10)
    result = await simulate(infra, elders=6, rate=400, duration_s=1.5, communities=2,
                            connections=3, seed=7, show_progress=False)
    assert result.published == 600
    assert result.achieved_rate > 0 and result.speed > 1
    await eventually(lambda: received >= result.published, 20, "every message at the broker")
    counter.cancel()
    assert received == result.published
