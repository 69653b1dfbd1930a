"""The detectors' priority lane: an SOS is alerted however far behind the detectors are on
telemetry, and once. Measured before it: at 10,000 heart-rate messages/s on 2 cores the
detectors fell seconds behind and 3 of 50 SOS presses had no call within 30 s (`eldercare bench
sos`), each waiting in the events topic behind telemetry.

Ingest writes every event of an urgent type to the events topic, marked, and to the lane's
topic (tests/test_sos_fast_path.py checks the batches); here each engine reads a topic of the
test's own, as the detectors service runs them (`detectors.service.run`)."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from detectors.config import DetectorConfig
from detectors.engine import Engine
from detectors.suite import PRIORITY_LANE, build, priority_lane
from devices.registry import Community
from foundation import kafka
from foundation.config import Settings
from foundation.contracts.events import URGENT_TYPES, CanonicalEvent
from tests import helpers
from tests.helpers import eventually, read_topic

FAST: dict[str, Any] = {"timer_tick_s": 0.2, "checkpoint_interval_s": 0.2,
                        "allowed_lateness_s": 0.5, "idle_advance_s": 0.3, "outage_quiet_s": 0.0,
                        "profile_ttl_s": 0.5}
BACKLOG = 2_000  # heart-rate readings ahead of the press in the events topic


def test_the_lane_runs_every_detector_that_alerts_on_an_urgent_event_by_itself() -> None:
    lane = priority_lane()
    assert {d.name for d in lane} == PRIORITY_LANE
    seen: set[str] = set()
    for d in lane:  # all of its input is on the lane: it sees only urgent types
        types: frozenset[str] = d.event_types  # type: ignore[attr-defined]
        assert types and types <= URGENT_TYPES, d.name
        seen |= types
    assert seen == URGENT_TYPES
    # The others stay with the first engine (an SOS is a sign of life; a fall flag feeds the
    # fall model), which leaves only the lane's detectors out for a marked event.
    assert len(build()) > len(lane)


def running(settings: Settings, topic: str, group: str, lane: bool
            ) -> contextlib.AbstractAsyncContextManager[Engine]:
    config = DetectorConfig(**{**FAST, "topic": topic, "group": group})
    return helpers.running_engine(settings, config, priority_lane(config) if lane else None)


def _event(elder: Any, kind: str, type_: str, n: int, at: datetime, **data: Any) -> CanonicalEvent:
    device = next(d for d in elder.devices if d.kind == kind)
    return CanonicalEvent(
        event_id=f"{device.id}/lane-{n}", elder_id=elder.id, community_id=elder.community_id,
        device_id=device.id, device_kind=kind, room=device.room, type=type_, event_time=at,
        received_at=datetime.now(UTC), data=data)


async def test_an_sos_behind_a_telemetry_backlog_is_alerted_by_the_lane_once(
    infra: Settings, community: Community,
) -> None:
    elder = community.elders[0]
    events = await helpers.new_topic(infra.kafka_bootstrap, 2)
    lane = await helpers.new_topic(infra.kafka_bootstrap, 2)
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        for n in range(BACKLOG):
            hr = _event(elder, "smart_watch", "hr", n, now - timedelta(seconds=BACKLOG - n),
                        bpm=72)
            await producer.send(events, hr.model_dump_json().encode(), key=hr.key())
        sos = _event(elder, "sos_button", "sos", BACKLOG, now)
        value = sos.model_dump_json().encode()
        # As ingest writes it: marked on the events topic, and on the lane.
        await producer.send_and_wait(events, value, key=sos.key(),
                                     headers=list(kafka.LANE_HEADERS))
        await producer.send_and_wait(lane, value, key=sos.key())
    finally:
        await producer.stop()

    def sos_alerts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r.get("elder_id") == elder.id and r.get("kind") == "sos"
                and r["evidence"][0]["event_id"] == sos.event_id]

    # The first engine is not even running (as far behind as it gets): the lane alerts.
    async with running(infra, lane, f"g-{lane}", lane=True):
        records = await read_topic(infra.kafka_bootstrap, kafka.ALERTS,
                                   lambda rs: bool(sos_alerts(rs)), 30)
    assert len(sos_alerts(records)) == 1

    # The first engine then reads the backlog and the marked press: no second alert for it.
    async with running(infra, events, f"g-{events}", lane=False) as main:
        await eventually(
            lambda: sum(p.next_offset or 0 for p in main.parts.values()) >= BACKLOG + 1,
            60, "the first engine read the backlog and the press")
    # Stopped, it has sent whatever it was going to send.
    assert len(sos_alerts(await _whole_topic(infra, kafka.ALERTS))) == 1


async def test_the_lane_alerts_an_sos_while_the_registry_cannot_be_read(
    infra: Settings, community: Community,
) -> None:
    """The lane reads every elder's profile when it starts, and a stale one behind the SOS that
    found it stale: with the registry's tables locked (a long migration, say) an SOS is still
    alerted at once, with what the registry said (this elder lives alone)."""
    import psycopg

    from detectors.service import lane_config

    elder = community.elders[0]
    lane = await helpers.new_topic(infra.kafka_bootstrap, 2)
    config = lane_config(DetectorConfig(**{**FAST, "group": f"g-{lane}"}))
    config = config.model_copy(update={"topic": lane})
    assert config.profiles_ahead
    async with helpers.running_engine(infra, config, priority_lane(config)) as engine:
        await eventually(lambda: engine.profiles.loaded(elder.id), 30, "profiles read ahead")
        async with await psycopg.AsyncConnection.connect(infra.database_url) as migration:
            await migration.execute("LOCK TABLE elders, devices IN ACCESS EXCLUSIVE MODE")
            sos = _event(elder, "sos_button", "sos", 1, datetime.now(UTC))
            producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(lane, sos.model_dump_json().encode(), key=sos.key())
            finally:
                await producer.stop()
            records = await read_topic(
                infra.kafka_bootstrap, kafka.ALERTS,
                lambda rs: any(r.get("elder_id") == elder.id and r.get("kind") == "sos"
                               for r in rs), 30)
            await migration.rollback()  # the lock goes
    alert = next(r for r in records if r.get("elder_id") == elder.id and r.get("kind") == "sos")
    assert alert["evidence"][0]["event_id"] == sos.event_id
    assert alert["evidence"][1]["lives_alone"] is True


async def _whole_topic(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every JSON object on `topic` up to its end now."""
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                              fetch_max_wait_ms=20)
    await reader.start()
    records: list[dict[str, Any]] = []
    try:
        parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or set()]
        reader.assign(parts)
        ends = await reader.end_offsets(parts)
        await reader.seek_to_beginning(*parts)
        unread = {tp for tp in parts if ends[tp] > 0}
        while unread:
            for tp, recs in (await reader.getmany(*unread, timeout_ms=500)).items():
                records += [v for r in recs if isinstance(v := json.loads(r.value), dict)]
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    unread.discard(tp)
    finally:
        await reader.stop()
    return records
