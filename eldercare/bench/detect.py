"""`eldercare bench detect`: events/s through the stream engine holding 10k elders' state, and
the memory per elder.

The same events (a mix of heartbeats, motion, vitals, check-ins for every elder, and for one
elder in `WINDOW_EVERY` a cane's accelerometer window, so the learned fall model is in the loop)
are produced once to a fresh topic; then, in the same run:
- baseline: one bare aiokafka consumer reads them and parses each into a `CanonicalEvent`;
- engine: the detectors service (`detectors.engine.Engine`) consumes them, runs every detector,
  sweeps the timers and checkpoints state + offsets to PostgreSQL; its clock starts once its
  partitions are assigned and loaded (the baseline's clock, too, starts after its consumer has
  started) and stops when every event is processed (`events_per_s`, the ratio's numerator) and
  when the checkpoint covers them (`checkpointed_events_per_s`); the start is reported apart;
- pure: the detectors alone (`Suite`, no Kafka, no database) over the same events;
- sweeps: µs per elder of the detectors' timers (`Suite.on_timer`) at the newest event time,
  the first sweep after the events, then the same elders 5 s later with nothing new: the
  service's wall-clock sweep, which runs every 5 s for every elder, idle or not;
- memory: tracemalloc of the 10k elders' states held by the pure run;
- fall_model: ms per accelerometer window through the learned fall classifier, one core."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from detectors.base import ElderProfile
from detectors.config import DetectorConfig
from detectors.suite import ElderState, Suite, build
from eldercare.bench.stack import database_and_kafka
from foundation import db, kafka
from foundation.config import Settings
from foundation.contracts.events import CanonicalEvent
from simulators import accel, payloads

KIT = (("watch", "smart_watch"), ("m1", "motion_sensor"), ("sos", "sos_button"),
       ("bp", "bp_meter"))
# One elder in this many sends a walking window from a cane (0.2 % of the events with 10 per
# elder): canes send one per walk, a few a day, among hundreds of heartbeats and readings.
WINDOW_EVERY = 50


def _progress(text: str) -> None:
    print(f"[bench detect] {text}", file=sys.stderr, flush=True)


def events(elders: int, per_elder: int, seed: int = 1) -> list[bytes]:
    """`per_elder` events for each elder over the last 5 minutes (no device is overdue, so the
    run measures processing, not alert production), in time order, as Kafka values."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(minutes=5)
    out: list[tuple[datetime, bytes]] = []
    for e in range(elders):
        eid = f"E-bench-{e}"
        for k in range(per_elder):
            dev, kind = KIT[k % len(KIT)] if k % 3 else KIT[0]
            t = start + timedelta(seconds=rng.uniform(0, 290))
            type_, data = {
                "watch": ("hr", {"bpm": round(rng.gauss(72, 5))}),
                "m1": ("motion", {}), "sos": ("heartbeat", {"battery": 80}),
                "bp": ("bp", {"systolic": round(rng.gauss(135, 8)), "diastolic": 80}),
            }[dev]
            if k % 3 == 0:
                type_, data = "heartbeat", {"battery": 90}
            ev = CanonicalEvent(
                event_id=f"{eid}-{dev}/{k}", elder_id=eid, community_id="c-bench",
                device_id=f"{eid}-{dev}", device_kind=kind, room="客厅", type=type_,
                event_time=t, received_at=t, data=data)
            out.append((t, ev.model_dump_json().encode()))
        if e % WINDOW_EVERY == 0:
            t = start + timedelta(seconds=rng.uniform(0, 290))
            body = payloads.accel_window(
                accel.walking(accel.DEFAULT_RATE_HZ, accel.WINDOW_S, e), accel.DEFAULT_RATE_HZ)
            ev = CanonicalEvent(
                event_id=f"{eid}-cane/w", elder_id=eid, community_id="c-bench",
                device_id=f"{eid}-cane", device_kind="smart_cane", room="客厅", type="accel",
                event_time=t, received_at=t, data={k: v for k, v in body.items() if k != "type"})
            out.append((t, ev.model_dump_json().encode()))
    out.sort(key=lambda x: x[0])
    return [v for _, v in out]


async def _produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=settings.kafka_partitions,
                                            replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        sends = []
        for v in values:
            ev = CanonicalEvent.model_validate_json(v)
            sends.append(await producer.send(topic, v, key=ev.key()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _baseline(settings: Settings, topic: str, n: int) -> float:
    """A bare consumer that parses every event: events/s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=500)
    await consumer.start()
    try:
        got = 0
        started = time.perf_counter()
        while got < n:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    CanonicalEvent.model_validate_json(r.value)
                    got += 1
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _engine(settings: Settings, topic: str, n: int, elders: int) -> dict[str, float]:
    """The detectors service over the `n` events: seconds to start (join the group, load the
    partitions), then events/s from then until every event is processed, and until the
    checkpoint (state and offsets in PostgreSQL) covers every event. The bare consumer's start
    is outside its clock too."""
    from detectors.engine import Engine

    config = DetectorConfig(topic=topic, group=f"bench-{uuid.uuid4().hex[:6]}",
                            outage_quiet_s=0, timer_tick_s=5.0, checkpoint_interval_s=1.0)
    engine = Engine(settings, config)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(engine.run(stop))
    pool = db.pool(settings.database_url)
    await pool.open()
    try:
        await asyncio.wait_for(engine.ready.wait(), 120)
        ready = time.perf_counter()
        processed: float | None = None
        while True:
            if processed is None and sum(
                    p.next_offset or 0 for p in engine.parts.values()) >= n:
                processed = time.perf_counter()
            async with pool.connection() as conn:
                row = await (await conn.execute(
                    "SELECT coalesce(sum(next_offset), 0) AS n FROM detector_checkpoints"
                    " WHERE group_id = %s", (config.group,))).fetchone()
            if row and int(row["n"]) >= n:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        checkpointed = time.perf_counter()
    finally:
        stop.set()
        await task
        await pool.close()
    held = sum(len(p.elders) for p in engine.parts.values())
    _progress(f"engine held {held} elders' state")
    return {"startup_s": round(ready - started, 2),
            "events_per_s": n / ((processed or checkpointed) - ready),
            "checkpointed_events_per_s": n / (checkpointed - ready)}


def _replay(suite: Suite, parsed: list[CanonicalEvent], sweep: bool = True
            ) -> dict[str, ElderState]:
    profiles: dict[str, ElderProfile] = {}
    states: dict[str, ElderState] = {}
    for ev in parsed:
        state = states.get(ev.elder_id)
        if state is None:
            state = states[ev.elder_id] = suite.initial()
            profiles[ev.elder_id] = ElderProfile(ev.elder_id, ev.community_id)
        suite.on_event(state, ev, profiles[ev.elder_id])
    if sweep:
        now = max(ev.event_time for ev in parsed)
        for elder_id, state in states.items():
            suite.on_timer(state, now, profiles[elder_id])
    return states


def _pure(values: list[bytes]) -> tuple[float, int, int, dict[str, float]]:
    """(events/s through the detectors alone, elders, bytes of state per elder, µs per elder
    of a first and of a repeated timer sweep)."""
    parsed = [CanonicalEvent.model_validate_json(v) for v in values]
    suite = Suite(build(DetectorConfig()))
    started = time.perf_counter()
    _replay(suite, parsed)
    rate = len(parsed) / (time.perf_counter() - started)
    sweeps = _sweeps(suite, parsed)
    tracemalloc.start()  # a second pass for memory: tracing slows the first one down
    base = tracemalloc.get_traced_memory()[0]
    states = _replay(suite, parsed)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return rate, len(states), held // max(1, len(states)), sweeps


def _sweeps(suite: Suite, parsed: list[CanonicalEvent]) -> dict[str, float]:
    """µs per elder: the first timer sweep after the events, then one 5 s later."""
    states = _replay(suite, parsed, sweep=False)
    profiles = {elder_id: ElderProfile(elder_id, "c-bench") for elder_id in states}
    now = max(ev.event_time for ev in parsed)
    out: dict[str, float] = {}
    for name, at in (("first", now), ("repeated", now + timedelta(seconds=5))):
        started = time.perf_counter()
        for elder_id, state in states.items():
            suite.on_timer(state, at, profiles[elder_id])
        out[name] = round((time.perf_counter() - started) / len(states) * 1e6, 2)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; `quick` uses 2k elders instead of 10k."""
    elders = 2_000 if quick else 10_000
    per_elder = 6 if quick else 10
    values = events(elders, per_elder)
    n = len(values)
    _progress(f"{n} events of {elders} elders")
    with database_and_kafka("bench-detect-") as infra:
        settings = infra.settings
        asyncio.run(kafka.ensure_topics(settings))
        topic = f"bench.events.{uuid.uuid4().hex[:6]}"
        asyncio.run(_produce(settings, topic, values))
        _progress("baseline: bare consumer")
        raw = asyncio.run(_baseline(settings, topic, n))
        _progress(f"baseline {raw:.0f} events/s; engine")
        engine = asyncio.run(_engine(settings, topic, n, elders))
        through = engine["events_per_s"]
        _progress(f"engine {through:.0f} events/s; detectors alone")
    pure, held, per, sweeps = _pure(values)
    from detectors.falls import bench as falls_bench

    return {
        "events_per_s": round(through),
        "checkpointed_events_per_s": round(engine["checkpointed_events_per_s"]),
        "engine_startup_s": engine["startup_s"],
        "elders": held,
        "events": n,
        "bytes_per_elder": per,
        "detectors_only_events_per_s": round(pure),
        "sweep_first_us_per_elder": sweeps["first"],
        "sweep_repeated_us_per_elder": sweeps["repeated"],
        "ratio_to_baseline": round(through / raw, 3),
        "fall_model": falls_bench.run(),
        "baseline": {"name": "bare aiokafka consumer parsing the same events",
                     "events_per_s": round(raw)},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2))
