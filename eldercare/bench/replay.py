"""`eldercare bench replay`: a recorded month played back through the stack as fast as it goes.

A month of the simulator's homes (their routines and every device's heartbeats, one elder's
morning left silent) is written as a recording (the JSONL `eldercare record` writes), re-timed
so that it ends now (`eldercare replay --retime`) and published unpaced (`--speed max`) onto a
stack of its own: embedded PostgreSQL, tansu and mosquitto, with ingest and the detectors as
child processes (as `eldercare up` runs them).

Figures: messages/s from the first publish until the detectors have checkpointed the last
event (`msg_per_s`), the publish rate alone, the detectors' lag when publishing ended and when
the run ended (events on the topic not yet checkpointed; `end_lag`), the seconds it took to
drain, and the event time of the silent morning's inactivity alert: judged in event time, it
comes at the elder's usual wake-up plus the margin of that very morning, not when the replay
happened to reach the next wall-clock sweep (`silent_morning_alert_h`, local hours)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from devices.registry import save
from eldercare.stack import embedded
from foundation import db, kafka, procs
from foundation.config import Settings, child_env
from foundation.mqtt import event_topic, topic_for
from simulators import population, recording, routine
from simulators.clock import LOCAL, local_midnight
from simulators.timeline import Timeline

SERVICES = ("ingest", "detectors")
SILENT_FROM_END = 4        # elder 0 never gets up on the morning of this many days before the end
SILENT_UNTIL_H = 16.0      # ...nothing from 04:00 to this local hour
DRAIN_TIMEOUT_S = 300.0


def _say(msg: str) -> None:
    print(f"[bench replay] {msg}", file=sys.stderr, flush=True)


def recorded_month(sims: list[population.SimElder], start: float, days: int, seed: int,
                   silent: tuple[str, float, float] | None = None) -> list[recording.Recorded]:
    """The homes' `days` days from local midnight `start` as a recording (every activity and
    heartbeat message, QoS 1); `silent` = (elder key, from, until epoch): that elder does
    nothing then (heartbeats go on)."""
    tl = Timeline()
    end = start + days * 86400.0
    for sim in sims:
        routine.add_life(tl, sim, start, end, seed)
        routine.add_heartbeats(tl, sim, start, end, seed)
    if silent is not None:
        key, lo, hi = silent
        tl.remove(lambda s: not (s.activity and s.device.elder_key == key and lo <= s.t < hi))
    out = []
    for n, s in enumerate(tl.ordered()):
        if s.action != "publish":
            continue
        body = {"msg_id": f"m{n}", "ts": round(s.t, 3), **s.body}
        topic = topic_for(s.device.community_id, s.device.device_id, str(s.body.get("type", "")))
        out.append(recording.Recorded(s.t - start, topic, json.dumps(body).encode(), 1, False))
    return out


def _wait_ready(urls: list[str], timeout: float = 60.0) -> None:
    """Until every service answers /readyz (subscribed, dependencies up)."""
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready after {timeout:.0f} s")
            time.sleep(0.2)  # polling a condition, not waiting for it to happen by itself


def _progress_of(settings: Settings, elders: list[str] | None = None
                 ) -> tuple[int, float | None]:
    """(events checkpointed by the detectors, how far (s) the watermark of the partitions
    holding `elders` is behind the newest event the detectors hold for them)."""
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM detector_checkpoints WHERE topic = %s",
            (kafka.EVENTS,)).fetchone()
        behind = conn.execute(
            "SELECT max(extract(epoch FROM newest - c.watermark)) FROM detector_checkpoints c"
            " JOIN (SELECT partition, max((state->'inactivity'->>'last_alive')::timestamptz)"
            "       AS newest FROM detector_state WHERE elder_id = ANY(%s) GROUP BY partition)"
            " s USING (partition) WHERE c.topic = %s", (elders or [], kafka.EVENTS)).fetchone()
    assert row is not None and behind is not None
    return int(row[0]), None if behind[0] is None else float(behind[0])


async def _topic_end(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster's metadata
        parts = consumer.partitions_for_topic(kafka.EVENTS) or set()
        tps = [TopicPartition(kafka.EVENTS, p) for p in parts]
        ends = await consumer.end_offsets(tps) if tps else {}
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record on `topic` (read up to the end offsets taken first), as JSON."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # tansu reports end offsets a little behind what it holds: read to them, then on until
        # a second passes with nothing more.
        ends = await consumer.end_offsets(tps)
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                out += [json.loads(r.value) for rs in batch.values() for r in rs]
        while batch := await consumer.getmany(timeout_ms=1000):
            out += [json.loads(r.value) for rs in batch.values() for r in rs]
        return out
    finally:
        await consumer.stop()


async def _ingest_ready(settings: Settings, probe: recording.Recorded,
                        timeout: float = 60.0) -> None:
    """Until ingest takes messages: `probe` (an elder of its own, dated before the recording,
    so that nobody's state or event time moves) is published until one reaches the topic."""
    deadline = time.monotonic() + timeout
    n = 0
    while await _topic_end(settings) == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"ingest took no message in {timeout:.0f} s")
        n += 1
        body = {**json.loads(probe.payload), "msg_id": f"probe-{n}"}
        await recording.replay([recording.Recorded(0, probe.topic, json.dumps(body).encode(), 1,
                                                   False)], settings.mqtt_url, math.inf)
        await asyncio.sleep(0.5)  # polling a condition, not waiting for it to happen


async def _measure(settings: Settings, records: list[recording.Recorded],
                   silent_from: float, elders: list[str]) -> dict[str, Any]:
    published = len(records)
    base = await _topic_end(settings)  # the readiness probes
    started = time.monotonic()
    publish_s = await recording.replay(records, settings.mqtt_url, math.inf)
    published_at = time.monotonic()
    _say(f"published {published} messages in {publish_s:.1f} s")
    lag_at_publish_end: int | None = None
    ingest_behind: int | None = None
    done_at = None
    deadline = published_at + DRAIN_TIMEOUT_S
    last_end, steady_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        end = await _topic_end(settings)
        done, _ = await asyncio.to_thread(_progress_of, settings)
        if lag_at_publish_end is None:
            lag_at_publish_end, ingest_behind = end - done, base + published - end
        if end != last_end:
            last_end, steady_since = end, time.monotonic()
        # Done: ingest has taken everything (or stopped taking: a rejected message goes to the
        # dead letters) and the detectors have checkpointed every event on the topic.
        if done >= end and (done >= base + published or time.monotonic() - steady_since > 3):
            done_at = time.monotonic()
            break
        await asyncio.sleep(0.2)  # polling a condition
    end = await _topic_end(settings)
    done, behind = await asyncio.to_thread(_progress_of, settings, elders)
    last_ts = max(json.loads(r.payload)["ts"] for r in records)
    # Alerts within the recording (after its end the elders are silent for real: the recording
    # ended up to a day before now).
    alerts = [a for a in await _read_all(settings, kafka.ALERTS) if a["kind"] == "inactivity"
              and datetime.fromisoformat(a["event_time"]).timestamp() <= last_ts]
    silent_alerts = [a for a in alerts if datetime.fromisoformat(a["event_time"]).timestamp()
                     >= silent_from]
    rejected: dict[str, int] = {}
    for d in await _read_all(settings, kafka.DEADLETTER):
        reason = str(d.get("reason", "?"))
        rejected[reason] = rejected.get(reason, 0) + 1
    first = min(silent_alerts, key=lambda a: a["event_time"], default=None)
    alert_h = None
    if first is not None:
        at = datetime.fromisoformat(first["event_time"]).astimezone(LOCAL)
        alert_h = round(at.hour + at.minute / 60, 2)
    seconds = (done_at or time.monotonic()) - started
    return {
        "messages": published,
        "msg_per_s": round(published / seconds, 1) if done_at else None,
        "publish_per_s": round(published / publish_s, 1),
        "lag_at_publish_end": lag_at_publish_end,
        "ingest_behind_at_publish_end": ingest_behind,
        "end_lag": max(0, end - done),
        "events_on_topic": end,
        "events_checkpointed": done - base,
        "dead_letters": rejected,
        "drain_s": round(done_at - published_at, 1) if done_at else None,
        # Event time judged up to the end: allowed lateness (30 s) behind the newest event.
        "watermark_behind_newest_event_s": None if behind is None else round(behind, 1),
        "inactivity_alerts": len(alerts),
        "silent_morning_alert_h": alert_h,
        "silent_morning_rule": (first or {}).get("evidence", [{}])[0].get("rule"),
        "baseline": {"publish_per_s": round(published / publish_s, 1)},
    }


def run(quick: bool = False, days: int | None = None, elders: int | None = None
        ) -> dict[str, Any]:
    """Run the benchmark; returns the figures (see the module docstring)."""
    days = days or (24 if quick else 30)
    elders = elders or (3 if quick else 6)
    silent_day = days - SILENT_FROM_END
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        data = Path(tmp)
        started: list[embedded.EmbeddedService] = []
        children: list[subprocess.Popen[bytes]] = []
        try:
            started += [embedded.start_postgres(data), embedded.start_kafka(data),
                        embedded.start_mqtt(data)]
            pg, kf, mq = started
            settings = Settings(
                database_url=pg.url, kafka_bootstrap=kf.url, mqtt_url=mq.url, data_dir=data,
                mqtt_auth_dir=mq.extra.get("auth_dir", ""),
                mqtt_device_url=mq.extra.get("device_url", ""),
                metrics_binds=f"detectors=127.0.0.1:{procs.free_port()}",
                ingest_http_bind=f"127.0.0.1:{procs.free_port()}", log_level="WARNING",
                ingest_max_past_s=(days + 2) * 86400.0,
            )
            db.upgrade(settings.database_url)
            asyncio.run(kafka.ensure_topics(settings))
            # One more elder than replayed: the readiness probe's.
            pops, sims = population.build("replay", [], 1, elders + 1, seed=5)
            save(settings.database_url, pops)
            prober, sims = sims[-1], sims[:-1]
            # Recorded long ago (a fixed month), played back as if it had just ended.
            start = local_midnight(datetime(2026, 1, 1, 12, tzinfo=LOCAL).timestamp())
            silent_lo = start + silent_day * 86400.0 + 4 * 3600
            silent_hi = start + silent_day * 86400.0 + SILENT_UNTIL_H * 3600
            month = recorded_month(sims, start, days, 5, (sims[0].key, silent_lo, silent_hi))
            records = recording.retime(month, time.time())
            shift = json.loads(records[-1].payload)["ts"] - json.loads(month[-1].payload)["ts"]
            env = child_env(settings)
            for name in SERVICES:
                children.append(procs.spawn(
                    [sys.executable, "-m", "eldercare.cli", "service", name],
                    data / f"{name}.log", env=env))
            _wait_ready([f"http://{settings.metrics_binds.split('=', 1)[1]}/readyz"])
            first_ts = json.loads(records[0].payload)["ts"]
            asyncio.run(_ingest_ready(settings, recording.Recorded(
                0, event_topic(prober.elder.community_id, prober.elder.devices[0].id),
                json.dumps({"ts": first_ts - 60, "type": "heartbeat", "battery": 90}).encode(),
                1, False)))
            figures = asyncio.run(_measure(settings, records, silent_lo + shift,
                                           [s.elder.id for s in sims]))
            figures.update(days=days, elders=elders)
        finally:
            for child in children:
                procs.stop(child)
            for svc in reversed(started):
                svc.stop()
    return figures
