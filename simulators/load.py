"""`eldercare simulate`: a population living its routines, played at whatever clock speed gives
the target message rate, over a pool of MQTT connections; reports the rate achieved."""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from devices.registry import save
from foundation.config import Settings
from foundation.mqtt import MqttTarget, topic_for
from simulators import population, routine
from simulators.clock import SimClock, start_in_past
from simulators.payloads import MessageIds
from simulators.timeline import Step, Timeline


@dataclass
class LoadResult:
    target_rate: float
    achieved_rate: float
    published: int
    seconds: float
    elders: int
    speed: float


def day_steps(sims: list[population.SimElder], day_start: float, seed: int) -> list[Step]:
    tl = Timeline()
    for sim in sims:
        routine.add_life(tl, sim, day_start, day_start + 86400, seed)
        routine.add_heartbeats(tl, sim, day_start, day_start + 86400, seed)
    return tl.ordered()


async def simulate(settings: Settings, elders: int, rate: float, duration_s: float,
                   communities: int = 2, connections: int = 8, seed: int = 1,
                   show_progress: bool = True) -> LoadResult:
    """Publish about `rate` messages/s for `duration_s` real seconds; registers the population
    (stable ids per seed, so repeated runs reuse it)."""
    pops, sims = population.build(f"load{seed}", [], communities, elders, seed)
    await asyncio.to_thread(save, settings.database_url, pops)
    wanted = int(rate * duration_s)
    probe = day_steps(sims, start_in_past("00:00", 86400), seed)
    per_day = max(1, len(probe))
    days = max(1, math.ceil(wanted / per_day))
    start = start_in_past("00:00", days * 86400.0)
    speed = rate * 86400.0 / per_day  # simulated seconds per real second
    clock = SimClock(start, speed)
    target = MqttTarget.parse(settings.mqtt_url)
    ids: dict[str, MessageIds] = {}
    nonce = MessageIds().nonce
    gate = asyncio.Semaphore(2000)
    published = 0
    began = time.monotonic()
    progress = Progress(TextColumn("[bold]simulate[/bold]"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} msgs"),
                        TextColumn("{task.fields[rate]:>8.0f} msg/s"), TimeElapsedColumn(),
                        disable=not show_progress)
    clients = [target.client(identifier=f"sim-load-{seed}-{k}", max_inflight_messages=1000)
               for k in range(connections)]
    for c in clients:
        c.pending_calls_threshold = 10_000  # publishes are pipelined on purpose
        await c.__aenter__()
    try:
        with progress:
            bar = progress.add_task("publish", total=wanted, rate=0.0)
            for day in range(days):
                # With one day, the probe already covers exactly [start, start + 1 day).
                steps = probe if days == 1 else day_steps(sims, start + day * 86400.0, seed)
                for s in steps:
                    if published >= wanted or s.action != "publish":
                        continue
                    await clock.sleep_until(s.t)
                    dev = s.device.device_id
                    msg_ids = ids.setdefault(dev, MessageIds(nonce))
                    body = json.dumps({"msg_id": msg_ids.next(), "ts": round(s.t, 3), **s.body})
                    client = clients[hash(dev) % connections]
                    await gate.acquire()
                    task = asyncio.create_task(client.publish(
                        topic_for(s.device.community_id, dev, str(s.body.get("type", ""))), body,
                        qos=1))
                    task.add_done_callback(lambda _t: gate.release())
                    published += 1
                    if published % 200 == 0:
                        elapsed = time.monotonic() - began
                        progress.update(bar, completed=published, rate=published / elapsed)
                if published >= wanted:
                    break
            for _ in range(2000):  # wait for every PUBACK
                await gate.acquire()
            elapsed = time.monotonic() - began
            progress.update(bar, completed=published, rate=published / elapsed)
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
    return LoadResult(rate, published / elapsed, published, elapsed, elders, speed)
