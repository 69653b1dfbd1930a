"""A recorded week played back through the running stack as fast as it goes (`eldercare replay
--speed max --retime`): the detectors judge the silent morning in event time. The inactivity
alert is dated that very morning, by the elder's usual wake-up plus the margin, not whenever
the replay happened to pass the next wall-clock timer sweep (five days go by in seconds)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer

from devices.registry import save
from eldercare.bench.replay import recorded_month
from foundation import kafka
from foundation.config import Settings, child_env
from foundation.contracts.events import CanonicalEvent
from ingest.event_batches import KeyPartitioner
from simulators import population
from simulators.clock import LOCAL, local_midnight
from tests.helpers import eventually

DAYS, SILENT_DAY = 6, 5


def _no_wakeup_alerts(database_url: str, elder_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT a.alert FROM incident_alerts a JOIN incidents i ON i.id = a.incident_id"
            " WHERE i.elder_id = %s AND a.alert->>'kind' = 'inactivity'", (elder_id,)).fetchall()
    return [r[0] for r in rows if r[0]["evidence"][0].get("rule") == "no_wakeup"]


def _partition(elder_id: str, count: int) -> int:
    """The partition ingest produces this elder's events to."""
    partitions = list(range(count))
    return KeyPartitioner()(elder_id.encode(), partitions, partitions)


async def _live_event_on_the_partition_of(settings: Settings, elder_id: str) -> None:
    """A live event of another elder (event time: now) on the replayed elder's partition, as a
    stack in use has: that partition's event time is then today, ahead of the whole replay."""
    count = settings.kafka_partitions
    for n in range(200):
        pops, sims = population.build(f"lv{secrets.token_hex(3)}", [], 1, 12, seed=n)
        same = [s for s in sims if _partition(s.elder.id, count) == _partition(elder_id, count)]
        if same:
            break
    save(settings.database_url, pops)
    other = same[0].elder
    device = other.devices[0]
    now = datetime.now(LOCAL)
    event = CanonicalEvent(event_id=f"live-{secrets.token_hex(4)}", elder_id=other.id,
                           community_id=other.community_id, device_id=device.id,
                           device_kind=device.kind.value, type="heartbeat", event_time=now,
                           received_at=now, data={"battery": 90})
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(kafka.EVENTS, event.model_dump_json().encode(),
                                     key=other.id.encode())
    finally:
        await producer.stop()


async def test_a_replayed_silent_morning_is_alerted_on_that_morning(
    platform: Settings, tmp_path: Path,
) -> None:
    pops, sims = population.build(f"rp{secrets.token_hex(3)}", [], 1, 2, seed=3)
    save(platform.database_url, pops)
    await _live_event_on_the_partition_of(platform, sims[0].elder.id)
    start = local_midnight(datetime(2026, 1, 1, 12, tzinfo=LOCAL).timestamp())
    day = start + SILENT_DAY * 86400.0
    week = recorded_month(sims, start, DAYS, 3, (sims[0].key, day + 4 * 3600, day + 16 * 3600))
    path = tmp_path / "week.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in week), encoding="utf-8")

    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "eldercare.cli", "replay", str(path), "--speed",
                         "max",
         "--retime"], env=child_env(platform), capture_output=True, text=True, timeout=300,
        check=False)
    assert done.returncode == 0, done.stderr
    assert f"replayed {len(week)} messages" in done.stderr

    elder = sims[0].elder.id
    await eventually(lambda: _no_wakeup_alerts(platform.database_url, elder), 120,
                     "the silent morning's inactivity alert")
    alert = _no_wakeup_alerts(platform.database_url, elder)[0]
    evidence = alert["evidence"][0]
    since = datetime.fromisoformat(evidence["silent_since"]).astimezone(LOCAL)
    at = datetime.fromisoformat(alert["event_time"]).astimezone(LOCAL)
    # The replayed morning (its hours kept by --retime)...
    assert (since.hour, since.minute) == (4, 0)
    # ...judged when its deadline passed in event time (timers every 5 minutes of it), not at
    # whatever hour the replay had reached at a wall-clock sweep.
    deadline = since - timedelta(hours=4) + timedelta(
        hours=evidence["usual_wake_hour"] + evidence["margin_h"])
    assert timedelta(0) <= at - deadline <= timedelta(minutes=5), (at, deadline)
