"""The embedded Kafka is rolled (a fresh tansu, a new incarnation) once a partition fills up,
and SOS presses made around the roll are each called exactly once. Real processes: the stack
`eldercare up` runs, with a roll threshold of 300 records instead of 8,000."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from devices.registry import Community, save
from eldercare.bench import chaos, soak
from eldercare.stack import embedded, roll
from foundation import deadletter_archive, kafka
from foundation.config import Settings, child_env
from tests.helpers import eventually
from tests.twilio_mock import TwilioMock

THRESHOLD = 300
READINGS = 1000  # 500 per watch: each watch's partition passes the threshold
PRESS_EVERY_S = 0.3  # pacing of the presses, not synchronisation
AFTER_ROLL = 5  # presses made once the roll is seen


async def _press_around_roll(stack: chaos.ChaosStack, readings: Community, sos: Community
                             ) -> dict[str, float]:
    """Fill the broker past the threshold while pressing SOS buttons, until a few presses
    after the roll. Returns elder id -> press time (perf_counter)."""
    assert stack.supervisor is not None and stack.supervisor.roller is not None
    log = stack.supervisor.roller.log
    fill = asyncio.create_task(asyncio.to_thread(soak.publish_readings, stack.settings,
                                                 readings, READINGS))
    pressed: dict[str, float] = {}
    presses = []
    after = 0
    for elder in sos.elders[:-2]:  # the last two: warm-up, and a press after it all
        after += 1 if log.rolls else 0
        if after > AFTER_ROLL:
            break
        body = json.dumps({"msg_id": f"sos-{uuid.uuid4().hex[:12]}", "ts": time.time(),
                           "type": "sos"}).encode()
        pressed[elder.id] = time.perf_counter()
        presses.append(asyncio.create_task(chaos._press(stack, sos.id, elder.devices[0].id,
                                                        body)))
        await asyncio.sleep(PRESS_EVERY_S)
    await asyncio.gather(fill, *presses)
    return pressed


def test_a_full_embedded_kafka_is_rolled_and_sos_around_the_roll_is_called_once(
    tmp_path_factory: pytest.TempPathFactory, twilio: TwilioMock,
) -> None:
    data = tmp_path_factory.mktemp("roll")
    with chaos.chaos_stack(data, twilio.url, services=soak.SERVICES,
                           kafka_roll_records=THRESHOLD, kafka_roll_check_s=0.5) as stack:
        readings = soak.watches(2)
        sos, phones = chaos.population(120)
        save(stack.settings.database_url, [readings, sos])
        asyncio.run(chaos.warm_up(stack, twilio.requests, sos, phones, sos.elders[-1]))
        before = asyncio.run(kafka.incarnation(stack.settings))

        pressed = asyncio.run(_press_around_roll(stack, readings, sos))
        asyncio.run(chaos._wait_for_calls(twilio.requests, phones, pressed, 60.0))
        row = chaos.tally("roll", stack.settings, twilio.requests, phones, pressed)

        assert stack.supervisor is not None and stack.supervisor.roller is not None
        log = stack.supervisor.roller.log
        assert log.rolls >= 1, log
        assert asyncio.run(kafka.incarnation(stack.settings)) != before
        assert soak._near_roll(pressed, log.windows), (pressed, log.windows)
        assert (row.lost, row.duplicated) == (0, 0), row
        assert row.incidents == row.first_calls == len(pressed), row

        # The fresh broker keeps delivering: one more press after the roll is called.
        asyncio.run(chaos.warm_up(stack, twilio.requests, sos, phones, sos.elders[-2], 60.0))


def test_end_offsets_count_the_last_batch_whole(tmp_path: Path) -> None:
    """tansu 0.6 reports a partition's end as the last batch's first offset + 1; the roll
    must count every record of that batch, or it would discard records nobody read."""
    svc = embedded.start_kafka(tmp_path)
    settings = Settings(kafka_bootstrap=svc.url)

    async def scenario() -> dict[TopicPartition, int]:
        await kafka.ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=svc.url, linger_ms=50)
        await producer.start()
        try:
            sent = [await producer.send(kafka.EVENTS, b"{}", partition=0) for _ in range(10)]
            await asyncio.gather(*sent)  # one batch: linger 50 ms
        finally:
            await producer.stop()
        return await roll.end_offsets(settings, [kafka.EVENTS])

    try:
        ends = asyncio.run(scenario())
    finally:
        svc.stop()
    assert ends[TopicPartition(kafka.EVENTS, 0)] == 10
    assert ends[TopicPartition(kafka.EVENTS, 1)] == 0


def test_a_dead_letter_made_before_a_roll_is_kept_after_it(
    tmp_path_factory: pytest.TempPathFactory, twilio: TwilioMock,
) -> None:
    """Nobody but the store reads the dead-letter topic: it archives every record into
    PostgreSQL, and the roll waits for it as for the other consumers, so a device's bad
    message dead-lettered before a roll is still there for the operator after it (the
    table, and `eldercare deadletters`)."""
    data = tmp_path_factory.mktemp("roll-deadletter")
    with chaos.chaos_stack(data, twilio.url, services=["ingest", "store"],
                           kafka_roll_records=THRESHOLD, kafka_roll_check_s=0.5) as stack:
        readings = soak.watches(2)
        save(stack.settings.database_url, [readings])
        device = readings.elders[0].devices[0].id
        bad = json.dumps({"msg_id": f"bad-{uuid.uuid4().hex[:8]}", "ts": time.time(),
                          "type": "heart_rate", "bpm": "fast"}).encode()
        asyncio.run(chaos._press(stack, readings.id, device, bad))
        before = asyncio.run(kafka.incarnation(stack.settings))

        soak.publish_readings(stack.settings, readings, READINGS)
        assert stack.supervisor is not None and stack.supervisor.roller is not None
        log = stack.supervisor.roller.log
        asyncio.run(eventually(lambda: log.rolls >= 1, 120, "a roll"))
        assert asyncio.run(kafka.incarnation(stack.settings)) != before

        kept = [r for r in deadletter_archive.recent(stack.settings.database_url, 100)
                if bytes(r["payload"]) == bad]
        assert len(kept) == 1, "archived once, before the roll"
        assert kept[0]["source"] == "mqtt" and kept[0]["topic"].endswith(f"/{device}/event")
        listed = subprocess.run(
            [sys.executable, "-m", "eldercare.cli", "deadletters", "--json", "--limit", "100"],
            env=child_env(stack.settings), capture_output=True, text=True, check=True).stdout
        mine = [json.loads(line) for line in listed.splitlines() if "bad-" in line]
        assert [m["reason"] for m in mine] == [kept[0]["reason"]]
