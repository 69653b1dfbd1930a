"""Playing a timeline: connect one virtual device per device in it, publish every step at its
simulated time, drop and reconnect devices, then say goodbye."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from foundation import logs
from foundation.mqtt import MqttTarget
from simulators.clock import SimClock
from simulators.devices import Credentials, VirtualDevice
from simulators.payloads import MessageIds
from simulators.timeline import Step

log = logs.get(__name__)


@dataclass
class PlayResult:
    published: int = 0
    dropped: int = 0
    lag_s: float = 0.0  # how far behind the simulated clock the player fell, at most (real s)


async def play(steps: list[Step], mqtt_url: str, credentials: Credentials, clock: SimClock,
               stop: asyncio.Event | None = None,
               on_step: Callable[[Step], None] | None = None,
               mqtt_version: str = "5",
               respond: Callable[[Step], Awaitable[None]] | None = None) -> PlayResult:
    """Publish `steps` (time-ordered) from their devices, which speak MQTT `mqtt_version`;
    "respond" steps (someone acknowledges or resolves an incident) go to `respond` once every
    earlier message is acknowledged by the broker. Returns what was done."""
    target = MqttTarget.parse(mqtt_url, mqtt_version)
    nonce = MessageIds().nonce
    devices: dict[str, VirtualDevice] = {}
    for s in steps:
        if s.device.device_id not in devices:
            devices[s.device.device_id] = VirtualDevice(target, s.device, credentials,
                                                        MessageIds(nonce))
    gate = asyncio.Semaphore(32)

    async def connect(d: VirtualDevice) -> None:
        async with gate:
            await d.connect(clock.now())

    await asyncio.gather(*(connect(d) for d in devices.values()))
    log.info("virtual devices connected", devices=len(devices), steps=len(steps))
    result = PlayResult()
    # Publishes are pipelined (up to 200 awaiting their PUBACK); each device's own messages
    # still leave in order, because tasks start in creation order on the device's connection.
    window = asyncio.Semaphore(200)
    pending: set[asyncio.Task[None]] = set()

    async def settle() -> None:
        if pending:
            await asyncio.gather(*pending)

    try:
        for s in steps:
            if stop is not None and stop.is_set():
                break
            await clock.sleep_until(s.t)
            result.lag_s = max(result.lag_s, (clock.now() - s.t) / clock.speed)
            d = devices[s.device.device_id]
            if s.action == "respond":
                await settle()
                if respond is not None:
                    await respond(s)
            elif s.action == "drop":
                await settle()
                await d.drop()
                result.dropped += 1
            elif s.action == "reconnect":
                await settle()
                if not d.connected:
                    await d.connect(s.t)
            elif d.connected:
                await window.acquire()
                task = asyncio.create_task(d.publish(s.body, s.t))
                task.add_done_callback(lambda _t: window.release())
                pending.add(task)
                task.add_done_callback(pending.discard)
                result.published += 1
            if on_step is not None:
                on_step(s)
        await settle()
    finally:
        await asyncio.gather(*(d.close() for d in devices.values()), return_exceptions=True)
    return result
