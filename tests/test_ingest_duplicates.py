"""Duplicates are recognised by what they are (device, msg_id, event time), across an ingest
restart; a msg_id reused with a new time (a device's counter restarted) is a new press, and
its alert gets an id of its own."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from detectors.base import ElderProfile
from detectors.episodes import EpisodeDetector
from detectors.immediate import immediate_alert
from devices.registry import Community
from foundation.config import Settings
from foundation.contracts.events import CanonicalEvent
from foundation.mqtt import MqttTarget, event_topic
from ingest.dedup import RecentIds
from tests.helpers import eventually
from tests.test_ingest_poison import Tail
from tests.test_ingest_service import IngestRun, dev, metric, metrics_text, serving, start_run


@pytest.fixture(scope="module")
def dup_run(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestRun]:
    yield from serving(start_run(infra, tmp_path_factory.mktemp("dups")))


async def duplicates(run: IngestRun) -> float:
    return metric(await metrics_text(run), "eldercare_ingest_duplicates_total", source="mqtt")


async def test_a_reused_msg_id_is_a_new_press_and_a_repeat_stays_a_repeat_across_restarts(
    dup_run: IngestRun, home: Community, infra: Settings,
) -> None:
    button = dev(home, "sos_button")
    topic = event_topic(home.id, button)
    first_ts = time.time() - 600
    first = json.dumps({"msg_id": "7", "ts": first_ts, "type": "sos"})
    # The battery was changed: the counter restarted and "7" comes again, ten minutes later.
    again = json.dumps({"msg_id": "7", "ts": first_ts + 600, "type": "sos"})
    tail = Tail(infra.kafka_bootstrap)
    await tail.start()
    try:
        async with MqttTarget.parse(dup_run.settings.mqtt_url).client() as client:
            for payload in (first, first, again):
                await client.publish(topic, payload, qos=1)

        def presses() -> list[str]:
            return sorted(e["event_time"] for e in tail.events
                          if e.get("event_id") == f"{button}/7")

        async def both() -> bool:
            await tail.poll()
            return len(presses()) >= 2 and await duplicates(dup_run) >= 1

        await eventually(both, 30, "both presses and one duplicate")

        dup_run.kill()  # the window is rebuilt from Kafka, not kept in this process
        dup_run.start()
        await dup_run.ready()
        sentinel = f"s-{uuid.uuid4().hex[:6]}"
        async with MqttTarget.parse(dup_run.settings.mqtt_url).client() as client:
            await client.publish(topic, first, qos=1)  # e.g. the device retransmits
            await client.publish(topic, json.dumps(
                {"msg_id": sentinel, "ts": time.time(), "type": "sos"}), qos=1)

        async def sentinel_seen() -> bool:
            await tail.poll()
            return tail.event(f"{button}/{sentinel}") is not None

        await eventually(sentinel_seen, 30, "the SOS after the repeat")
        assert await duplicates(dup_run) == 1, "the repeat after the restart is a duplicate"
        assert len(presses()) == 2, presses()
    finally:
        await tail.consumer.stop()
    assert "duplicate window read back" in dup_run.log.read_text()


def _press(msg_id: str, at: datetime) -> CanonicalEvent:
    return CanonicalEvent(
        event_id=f"btn-1/{msg_id}", elder_id="E-1", community_id="c-1", device_id="btn-1",
        device_kind="sos_button", type="sos", event_time=at, received_at=at, data={})


def test_alert_ids_differ_between_presses_and_repeat_for_a_replay() -> None:
    t = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    old, new = _press("7", t), _press("7", t + timedelta(days=3))
    ids = [immediate_alert(e, t) for e in (old, new, old)]
    assert ids[0] and ids[1] and ids[2]
    assert ids[0].alert_id != ids[1].alert_id and ids[0].alert_id == ids[2].alert_id
    episodes = EpisodeDetector("sos", "sos", "sos", 300)
    profile = ElderProfile("E-1", "c-1")
    first = episodes.on_event(episodes.initial(), old, profile)
    later = episodes.on_event(first.state, new, profile)
    replay = episodes.on_event(episodes.initial(), old, profile)
    assert first.alerts[0].alert_id != later.alerts[0].alert_id
    assert first.alerts[0].alert_id == replay.alerts[0].alert_id


def test_the_window_is_bounded_in_time_and_size() -> None:
    recent = RecentIds(capacity=3, window_s=60)
    for n in range(5):
        recent.add(f"k{n}", at=1000.0 + n)
    assert len(recent) == 3 and not recent.seen("k0", now=1005) and recent.seen("k4", now=1005)
    assert not recent.seen("k4", now=1100)  # older than the window
    recent.add("k9", at=1100.0)
    assert len(recent) == 1
