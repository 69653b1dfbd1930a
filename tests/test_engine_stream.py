"""The stream engine through real Kafka and PostgreSQL, in real time: alerts from canonical
events, silence timers without traffic, a dead gateway, and recovery after a kill.

Each test feeds its own events topic (so no other test's elders are replayed into it) and
produces to the real alerts topic; alerts are told apart by elder id."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from detectors.config import DetectorConfig
from detectors.engine import Engine
from devices.registry import Community, Elder, save
from foundation import kafka
from foundation.config import Settings, child_env
from foundation.contracts.events import CanonicalEvent
from simulators import accel
from tests import helpers
from tests.conftest import make_community
from tests.helpers import eventually, read_topic

FAST = {"timer_tick_s": 0.2, "checkpoint_interval_s": 0.2, "allowed_lateness_s": 0.5,
        "idle_advance_s": 0.3, "outage_quiet_s": 0.0, "profile_ttl_s": 0.5}


async def new_topic(settings: Settings, partitions: int = 2) -> str:
    return await helpers.new_topic(settings.kafka_bootstrap, partitions)


def engine(settings: Settings, **config: Any) -> contextlib.AbstractAsyncContextManager[Engine]:
    return helpers.running_engine(settings, DetectorConfig(**{**FAST, **config}))


class Publisher:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        self.topic = topic
        self.n = 0

    async def __aenter__(self) -> Publisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, elder: Elder, kind: str, type_: str, at: datetime | None = None,
                   **data: Any) -> CanonicalEvent:
        device = next(d for d in elder.devices if d.kind == kind)
        self.n += 1
        at = at or datetime.now(UTC)
        event = CanonicalEvent(
            event_id=f"{device.id}/m{self.n}-{uuid.uuid4().hex[:6]}", elder_id=elder.id,
            community_id=elder.community_id, device_id=device.id, device_kind=kind,
            room=device.room, type=type_, event_time=at, received_at=datetime.now(UTC),
            data=data)
        await self.producer.send_and_wait(self.topic, event.model_dump_json().encode(),
                                          key=event.key())
        return event


def alerts_of(elder_id: str, records: list[dict[str, Any]], kind: str | None = None
              ) -> list[dict[str, Any]]:
    return [r for r in records if r.get("elder_id") == elder_id and (kind is None or
                                                                       r.get("kind") == kind)]


async def wait_alerts(settings: Settings, elder_id: str, kinds: set[str], timeout: float = 30
                      ) -> list[dict[str, Any]]:
    return await read_topic(
        settings.kafka_bootstrap, kafka.ALERTS,
        lambda rs: kinds <= {r["kind"] for r in alerts_of(elder_id, rs)}, timeout)


async def test_emergencies_through_kafka(infra: Settings, community: Community) -> None:
    elder = community.elders[0]
    topic = await new_topic(infra)
    async with engine(infra, topic=topic, group=f"g-{topic}"), Publisher(infra, topic) as pub:
        now = datetime.now(UTC)
        await pub.send(elder, "sos_button", "sos", now)
        await pub.send(elder, "sos_button", "sos", now + timedelta(seconds=5))  # same episode
        await pub.send(elder, "smoke_alarm", "smoke", now, state=True)
        await pub.send(elder, "bp_meter", "bp", now, systolic=196, diastolic=104)
        await pub.send(elder, "bp_meter", "bp", now + timedelta(minutes=3), systolic=189,
                       diastolic=121)
        await pub.send(elder, "smart_watch", "heartbeat", now, battery=9)
        records = await wait_alerts(infra, elder.id, {"sos", "smoke", "vital", "low_battery"})
    mine = alerts_of(elder.id, records)
    # Each press is an alert of its own; the dispatcher puts both on one incident.
    assert len({r["alert_id"] for r in mine if r["kind"] == "sos"}) == 2
    smoke = next(r for r in mine if r["kind"] == "smoke")
    assert smoke["severity"] == "critical" and smoke["room"] == "卧室"
    assert smoke["evidence"][-1]["lives_alone"] is True  # from the registry
    vital = next(r for r in mine if r["kind"] == "vital")
    assert {e["rule"] for e in vital["evidence"]} <= {"sbp_high", "dbp_high"}
    battery = next(r for r in mine if r["kind"] == "low_battery")
    assert battery["maintenance"] is True


def _counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_late_fall_window_waits_for_the_elders_own_data_not_the_wall_clock(
    infra: Settings,
) -> None:
    """A watch uploading what it buffered offline (or a replay): one elder's events are an hour
    behind while a neighbour on the same partition keeps the watermark at the wall clock. Timer
    sweeps between the fall-like window and the steps that follow it must not call a fall."""
    c = make_community(elders=2)
    save(infra.database_url, [c])
    late, live = c.elders
    topic = await new_topic(infra, partitions=1)
    async with engine(infra, topic=topic, group=f"g-{topic}", idle_advance_s=120), \
            Publisher(infra, topic) as pub:
        seen = _counter("eldercare_detectors_events_total")
        await pub.send(live, "smart_watch", "heartbeat", battery=80)
        t0 = datetime.now(UTC) - timedelta(hours=1)
        await pub.send(late, "smart_cane", "accel", t0, rate_hz=accel.DEFAULT_RATE_HZ,
                       samples=[list(s) for s in accel.fall(seed=7)])
        await eventually(lambda: _counter("eldercare_detectors_events_total") >= seen + 2)
        sweeps = _counter("eldercare_detectors_timer_sweeps_total")
        await eventually(lambda: _counter("eldercare_detectors_timer_sweeps_total") >= sweeps + 3)
        await pub.send(late, "smart_cane", "steps", t0 + timedelta(seconds=8), steps=30)
        await pub.send(late, "sos_button", "sos", t0 + timedelta(seconds=20))
        records = await wait_alerts(infra, late.id, {"sos"})
    assert [r["kind"] for r in alerts_of(late.id, records)] == ["sos"]


async def test_dead_gateway_is_one_offline_alert_and_no_inactivity(infra: Settings) -> None:
    c = make_community(elders=2)
    save(infra.database_url, [c])
    live, dead = c.elders
    with psycopg.connect(infra.database_url) as conn:  # fast heartbeats make a short test
        conn.execute("UPDATE devices SET heartbeat_interval_s = 1 WHERE elder_id = ANY(%s)",
                     ([live.id, dead.id],))
    topic = await new_topic(infra)
    # Hair-trigger inactivity: any silence over ~5 s in a live home alerts, at any hour.
    twitchy = {"silence_min_alone_h": 0.0015, "silence_max_h": 0.0015, "awake_p": 0.0,
               "wake_margin_alone_h": 48.0}
    async with engine(infra, topic=topic, group=f"g-{topic}", **twitchy), \
            Publisher(infra, topic) as pub:
        for elder in (live, dead):
            for d in elder.devices:
                await pub.send(elder, d.kind, "heartbeat")

        async def live_heartbeats() -> None:
            while True:
                for d in live.devices:
                    await pub.send(live, d.kind, "heartbeat")
                await asyncio.sleep(0.3)  # the device's own cadence, not synchronisation

        beating = asyncio.create_task(live_heartbeats())
        try:
            records = await wait_alerts(infra, live.id, {"inactivity"}, 40)
            records = await wait_alerts(infra, dead.id, {"gateway_offline"}, 20)
        finally:
            beating.cancel()
    from_dead = alerts_of(dead.id, records)
    assert {r["kind"] for r in from_dead} == {"gateway_offline"}
    assert len({r["alert_id"] for r in from_dead}) == 1
    assert from_dead[0]["maintenance"] is True
    assert not alerts_of(live.id, records, "gateway_offline")


def _service(settings: Settings, topic: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    env = child_env(settings)
    env.update({f"ELDERCARE_DETECT_{k.upper()}": str(v) for k, v in FAST.items()})
    env.update(ELDERCARE_DETECT_TOPIC=topic, ELDERCARE_DETECT_GROUP=group)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "eldercare.cli", "service", "detectors"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def _checkpointed(url: str, group: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM detector_checkpoints"
                           " WHERE group_id = %s", (group,)).fetchone()
    return int(row[0]) if row else 0


async def test_kill_mid_stream_loses_no_alert_and_repeats_keep_their_ids(
    infra: Settings, community: Community, tmp_path: Path,
) -> None:
    elder = community.elders[0]
    topic = await new_topic(infra)
    group = f"g-{topic}"
    log = tmp_path / "detectors.log"
    t0 = datetime.now(UTC)
    async with Publisher(infra, topic) as pub:
        first = _service(infra, topic, group, log)
        try:
            await pub.send(elder, "sos_button", "sos", t0)
            bp1 = await pub.send(elder, "bp_meter", "bp", t0, systolic=199, diastolic=100)
            await wait_alerts(infra, elder.id, {"sos"})
            await eventually(lambda: _checkpointed(infra.database_url, group) >= 2, 30,
                             "a checkpoint past both events")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        # While the detectors are dead: the repeat reading and a second SOS press.
        await pub.send(elder, "bp_meter", "bp", t0 + timedelta(minutes=4), systolic=191,
                       diastolic=99)
        await pub.send(elder, "sos_button", "sos", t0 + timedelta(seconds=40))
        second = _service(infra, topic, group, log)
        try:
            records = await wait_alerts(infra, elder.id, {"sos", "vital"})
            await eventually(lambda: _checkpointed(infra.database_url, group) >= 4, 30,
                             "a checkpoint past all four events")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    vital = alerts_of(elder.id, records, "vital")[0]
    # The first reading was before the checkpoint: it came back from the stored state.
    assert bp1.event_id in {r["event_id"] for r in vital["evidence"][0]["readings"]}
    sos_ids = {r["alert_id"] for r in alerts_of(elder.id, records, "sos")}
    assert len(sos_ids) == 2, "each press is its own alert (the dispatcher groups them)"

    # A crash before any checkpoint: everything is replayed, and the alerts repeat their ids.
    with psycopg.connect(infra.database_url) as conn:
        conn.execute("DELETE FROM detector_state WHERE group_id = %s", (group,))
        conn.execute("UPDATE detector_checkpoints SET next_offset = 0 WHERE group_id = %s",
                     (group,))
    before = len(alerts_of(elder.id, records))
    third = _service(infra, topic, group, log)
    try:
        replayed = await read_topic(
            infra.kafka_bootstrap, kafka.ALERTS,
            lambda rs: len(alerts_of(elder.id, rs, "vital")) >= 2
            and len(alerts_of(elder.id, rs)) > before, 30)
    finally:
        third.send_signal(signal.SIGTERM)
        third.wait(20)
    ids = {r["alert_id"] for r in alerts_of(elder.id, replayed)}
    assert ids == {r["alert_id"] for r in alerts_of(elder.id, records)}



async def test_a_replay_of_earlier_days_is_judged_though_a_restart_re_armed_silence(
    infra: Settings,
) -> None:
    """Detectors restarted after a while re-arm silence from now (they missed the live events
    of the gap), yet a recording of January replayed into them minutes later still has its
    silent morning alerted: the re-arm covers event times from the outage on, not before."""
    c = make_community(elders=2)
    save(infra.database_url, [c])
    replayed, live = c.elders
    topic = await new_topic(infra, partitions=1)
    group = f"g-{topic}"
    tz = ZoneInfo("Asia/Shanghai")
    async with Publisher(infra, topic) as pub:
        async with engine(infra, topic=topic, group=group):
            await pub.send(live, "motion_sensor", "heartbeat")
            await eventually(lambda: _checkpointed(infra.database_url, group), 30,
                             "the live partition's checkpoint")
        # Checkpointed longer ago than outage_gap_s (0 here): on assignment, silence is
        # re-armed from now plus the grace.
        async with engine(infra, topic=topic, group=group, outage_gap_s=0.0):
            first = datetime(2026, 1, 5, tzinfo=tz)
            silent = first + timedelta(days=3)
            for half_hour in range(4 * 48):
                at = first + timedelta(minutes=30 * half_hour)
                await pub.send(replayed, "motion_sensor", "heartbeat", at)
                mornings_silent = at >= silent and at.hour < 16
                if 7 <= at.hour < 21 and not mornings_silent:
                    await pub.send(replayed, "motion_sensor", "motion", at)
            records = await read_topic(
                infra.kafka_bootstrap, kafka.ALERTS,
                lambda rs: any(r["evidence"][0].get("rule") == "no_wakeup"
                               for r in alerts_of(replayed.id, rs, "inactivity")), 60)
    alert = next(r for r in alerts_of(replayed.id, records, "inactivity")
                 if r["evidence"][0].get("rule") == "no_wakeup")
    since = datetime.fromisoformat(alert["evidence"][0]["silent_since"]).astimezone(tz)
    assert since.date() == silent.date()


async def test_a_batch_fetched_before_the_latest_seek_skips_no_sos(
    infra: Settings, community: Community,
) -> None:
    """A rebalance seeks a partition back (a new broker incarnation is read from its start)
    while a batch fetched from the old position waits for the engine's lock. That batch must
    not move the partition past the records below it: after rolls of the embedded Kafka the
    old position pointed into the new log, its batch was processed first, and an SOS below it
    was skipped as "already processed" (the soak bench lost one press in a few runs)."""
    elder = community.elders[0]
    topic = await new_topic(infra, partitions=1)
    tp = TopicPartition(topic, 0)
    async with engine(infra, topic=topic, group=f"g-{topic}") as eng, \
            Publisher(infra, topic) as pub:
        async with eng.lock:  # as during a rebalance: the engine cannot process meanwhile
            await pub.send(elder, "sos_button", "sos")  # offset 0, the records below
            for _ in range(5):  # offsets 1-5
                await pub.send(elder, "smart_watch", "heartbeat", battery=80)
            reader = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap,
                                      enable_auto_commit=False)
            await reader.start()
            try:
                reader.assign([tp])
                reader.seek(tp, 3)
                stale = await reader.getmany(tp, timeout_ms=5000)
            finally:
                await reader.stop()
            assert stale[tp][0].offset == 3
            await eng._process(stale)  # the batch from the old position comes first
        records = await wait_alerts(infra, elder.id, {"sos"})
    assert alerts_of(elder.id, records, "sos")
