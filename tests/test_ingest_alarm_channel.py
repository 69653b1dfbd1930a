"""The alarm channel (`eldercare/v1/{community}/{device}/alarm`), read by ingest on a session of
its own: an SOS published behind a flood of telemetry reaches Kafka ahead of it, exactly once,
and the channel takes alarms only. Real mosquitto and ingest processes (as in
test_ingest_service.py); PostgreSQL and Kafka are the session's `infra`."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from devices.registry import Community
from foundation import kafka
from foundation.config import Settings
from foundation.mqtt import MqttTarget, alarm_topic, event_topic
from tests.helpers import eventually, read_topic
from tests.test_ingest_service import IngestRun, dev, metric, metrics_text, start_run

BACKLOG = 10_000  # telemetry queued in the broker for ingest before the SOS


async def _alarm_session_up(run: IngestRun, before: int) -> None:
    def up() -> bool:
        assert run.worker is not None and run.worker.poll() is None, run.log.read_text()
        return run.log.read_text().count("ingest alarm session subscribed") > before

    await eventually(up, 60, "ingest's alarm session to subscribe")


def _alarm_sessions(run: IngestRun) -> int:
    return run.log.read_text().count("ingest alarm session subscribed") if run.log.exists() else 0


async def _offsets(bootstrap: str, wanted: set[str]) -> dict[str, list[int]]:
    """event id -> offsets of its records on the events topic, once every wanted id is there."""
    found: dict[str, list[int]] = {}
    reader = AIOKafkaConsumer(kafka.EVENTS, bootstrap_servers=bootstrap,
                              group_id=f"test-{uuid.uuid4().hex}",
                              auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await reader.start()
    try:
        deadline = time.monotonic() + 120
        while not wanted <= found.keys():
            assert time.monotonic() < deadline, f"{len(wanted - found.keys())} events missing"
            for recs in (await reader.getmany(timeout_ms=200)).values():
                for r in recs:
                    try:
                        event_id = json.loads(r.value).get("event_id")
                    except (ValueError, AttributeError):
                        continue
                    if event_id in wanted:
                        found.setdefault(event_id, []).append(r.offset)
        # What else is on the topic already (a second copy of an event would be there).
        for recs in (await reader.getmany(timeout_ms=500)).values():
            for r in recs:
                try:
                    event_id = json.loads(r.value).get("event_id")
                except (ValueError, AttributeError):
                    continue
                if event_id in wanted:
                    found[event_id].append(r.offset)
    finally:
        await reader.stop()
    return found


async def test_an_sos_overtakes_a_telemetry_backlog_and_reaches_kafka_once(
    infra: Settings, home: Community, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Ingest is down while a watch floods its event channel; the elder then presses SOS (on
    the alarm channel). When ingest comes back, the broker holds both for it: the press is on
    Kafka before most of the flood (same elder, same partition: offsets compare), not behind
    all of it as on one session, and only once although both sessions received it."""
    run = start_run(infra, tmp_path_factory.mktemp("alarm-backlog"))
    try:
        await run.ready()
        await _alarm_session_up(run, 0)
        run.kill()  # the broker keeps both persistent sessions and queues for them
        watch, button = dev(home, "smart_watch"), dev(home, "sos_button")
        tag = uuid.uuid4().hex[:6]
        lines = "".join(json.dumps({"msg_id": f"b{tag}-{n}", "ts": time.time(), "type": "steps",
                                    "steps": n}) + "\n" for n in range(BACKLOG))
        target = MqttTarget.parse(run.settings.mqtt_url)
        pub = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-h", target.host, "-p", str(target.port), "-q", "1",
            "-t", event_topic(home.id, watch), "-l", stdin=asyncio.subprocess.PIPE)
        await pub.communicate(lines.encode())
        assert pub.returncode == 0
        press = f"sos-{tag}"
        async with target.client(identifier=button) as device:
            await device.publish(alarm_topic(home.id, button), json.dumps(
                {"msg_id": press, "ts": time.time(), "type": "sos"}), qos=1)
        sessions = _alarm_sessions(run)
        run.start()
        await run.ready()
        await _alarm_session_up(run, sessions)

        async def read(n: int) -> bool:
            text = await metrics_text(run)
            return metric(text, "eldercare_ingest_received_total", source="mqtt") >= n

        await eventually(lambda: read(BACKLOG + 1), 120, "ingest to read the backlog")
        flood = {f"{watch}/b{tag}-{n}" for n in range(BACKLOG)}
        sos = f"{button}/{press}"
        found = await _offsets(infra.kafka_bootstrap, flood | {sos})
        ahead = sum(1 for e in flood if found[e][0] < found[sos][0])
        assert ahead < BACKLOG // 2, f"{ahead} of {BACKLOG} readings went ahead of the SOS"
        # The main session's copy came behind the flood: read, and dropped.
        await eventually(lambda: read(BACKLOG + 2), 60, "the main session's copy of the press")
        copies = (await _offsets(infra.kafka_bootstrap, {sos}))[sos]
        assert len(copies) == 1, f"the press is on Kafka {len(copies)} times"
        text = await metrics_text(run)
        assert metric(text, "eldercare_ingest_duplicates_total", source="mqtt") == 0
    finally:
        run.stop()


async def test_the_alarm_channel_takes_alarms_only_and_dead_letters_the_rest_once(
    infra: Settings, home: Community, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A heart rate published on the alarm channel is dead-lettered once (`not_an_alarm`),
    although both sessions read it; an SOS there becomes one event on the events topic and one
    on the priority lane."""
    run = start_run(infra, tmp_path_factory.mktemp("alarm-only"))
    try:
        await run.ready()
        await _alarm_session_up(run, 0)
        watch = dev(home, "smart_watch")
        tag = uuid.uuid4().hex[:6]
        misplaced, press = f"hr-{tag}", f"sos-{tag}"
        async with MqttTarget.parse(run.settings.mqtt_url).client(identifier=watch) as device:
            for body in ({"msg_id": misplaced, "ts": time.time(), "type": "hr", "bpm": 70},
                         {"msg_id": press, "ts": time.time(), "type": "sos"}):
                await device.publish(alarm_topic(home.id, watch), json.dumps(body), qos=1)

        async def both_sessions_read_both() -> bool:
            text = await metrics_text(run)
            return metric(text, "eldercare_ingest_received_total", source="mqtt") >= 4

        await eventually(both_sessions_read_both, 60, "both sessions to read both messages")

        def mine(r: dict[str, Any]) -> bool:
            return misplaced in base64.b64decode(r.get("payload_b64", "")).decode(errors="replace")

        letters = await read_topic(infra.kafka_bootstrap, kafka.DEADLETTER,
                                   lambda rs: any(mine(r) for r in rs))
        letters = [r for r in letters if mine(r)]
        assert [r["reason"] for r in letters] == ["not_an_alarm"], letters
        assert "on .../event" in letters[0]["detail"]
        event_id = f"{watch}/{press}"
        for topic in (kafka.EVENTS, kafka.URGENT):
            records = await read_topic(infra.kafka_bootstrap, topic,
                                       lambda rs: any(r.get("event_id") == event_id for r in rs))
            assert sum(1 for r in records if r.get("event_id") == event_id) == 1, topic
    finally:
        run.stop()
