"""Poison payloads against the real ingest path (`eldercare service ingest`, mosquitto, tansu):
every message is acknowledged and becomes a canonical event or a dead-letter record, ingest
never reconnects over one, and a valid SOS sent afterwards still goes through."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devices.registry import Community
from foundation import kafka
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from tests.helpers import eventually
from tests.test_ingest_service import GATEWAY, IngestRun, dev, serving, signed, start_run


@pytest.fixture(scope="module")
def poison_run(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestRun]:
    yield from serving(start_run(infra, tmp_path_factory.mktemp("poison")))


class Tail:
    """The events and dead-letter topics read from their ends at creation, accumulated."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=20,
                                         enable_auto_commit=False)
        self.events: list[dict[str, Any]] = []
        self.letters: list[dict[str, Any]] = []

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(t, p) for t in (kafka.EVENTS, kafka.DEADLETTER)
               for p in sorted(self.consumer.partitions_for_topic(t) or [])]
        if not tps:  # metadata not fetched yet
            await self.consumer._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in (kafka.EVENTS, kafka.DEADLETTER)
                   for p in sorted(self.consumer.partitions_for_topic(t) or [])]
        self.consumer.assign(tps)
        ends = await self.consumer.end_offsets(tps)
        for tp, end in ends.items():
            self.consumer.seek(tp, end)

    async def poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=100)
        for tp, recs in batch.items():
            into = self.events if tp.topic == kafka.EVENTS else self.letters
            into.extend(json.loads(r.value) for r in recs)

    def letter_of(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        digest = hashlib.sha256(payload).hexdigest()
        return next((r for r in self.letters
                     if r["topic"] == topic and r.get("payload_sha256") == digest), None)

    def event(self, event_id: str) -> dict[str, Any] | None:
        return next((r for r in self.events if r.get("event_id") == event_id), None)


@pytest.fixture
async def tail(infra: Settings) -> AsyncIterator[Tail]:
    t = Tail(infra.kafka_bootstrap)
    await t.start()
    yield t
    await t.consumer.stop()


def reconnects(run: IngestRun) -> int:
    return run.log.read_text().count("reconnecting")


def nested(depth: int) -> bytes:
    return b'{"msg_id": "n1", "ts": 1, "type": "sos", "x": ' + b"[" * depth + b"]" * depth + b"}"


async def test_poison_payloads_are_dead_lettered_with_a_reason_and_ingest_keeps_going(
    poison_run: IngestRun, home: Community, tail: Tail,
) -> None:
    c, now = home, time.time()
    cane, button = dev(c, "smart_cane"), dev(c, "sos_button")
    huge_int = b'{"msg_id": "i1", "ts": ' + b"9" * 4400 + b', "type": "sos"}'
    # Every sample out of range: one validation error each, a detail of about a megabyte.
    wide = json.dumps({"msg_id": "a1", "ts": now, "type": "accel", "rate_hz": 50,
                       "samples": [[99.5, -99.5, 99.5]] * 2500}).encode()
    assert len(wide) < poison_run.settings.mqtt_max_payload
    cases = [(event_topic(c.id, button), nested(5000), "nesting_too_deep"),
             (event_topic(c.id, button), nested(200), "nesting_too_deep"),
             (event_topic(c.id, button), huge_int, "number_too_large"),
             (event_topic(c.id, cane), wide, "out_of_range"),
             (event_topic(c.id, button),
              b'{"msg_id": "z\\u0000", "ts": 1, "type": "sos"}', "invalid_text"),
             (event_topic(c.id, button),
              b'{"msg_id": "s\\ud800", "ts": 1, "type": "sos"}', "invalid_text")]
    sos_id = f"ok-{uuid.uuid4().hex[:8]}"
    before = reconnects(poison_run)
    async with MqttTarget.parse(poison_run.settings.mqtt_url).client() as client:
        for topic, payload, _ in cases:
            await client.publish(topic, payload, qos=1)
        await client.publish(event_topic(c.id, button), json.dumps(
            {"msg_id": sos_id, "ts": now, "type": "sos"}), qos=1)

    async def all_there() -> bool:
        await tail.poll()
        return tail.event(f"{button}/{sos_id}") is not None and all(
            tail.letter_of(t, p) for t, p, _ in cases)

    await eventually(all_there, 30, "a dead letter per poison payload and the SOS event")
    for topic, payload, reason in cases:
        letter = tail.letter_of(topic, payload)
        assert letter is not None and letter["reason"] == reason, (reason, letter)
        assert letter["detail"] and letter["payload_size"] == len(payload)
    record = tail.letter_of(event_topic(c.id, cane), wide)
    assert record is not None and len(json.dumps(record)) < 300_000, "dead letters are capped"
    assert record["detail_truncated"] and "samples" in record["detail"]
    assert reconnects(poison_run) == before, poison_run.log.read_text()[-2000:]


async def test_http_gateway_answers_4xx_for_hostile_bodies_never_500(
    poison_run: IngestRun, home: Community,
) -> None:
    c = home
    url = f"{poison_run.http}/ingest/v1/batch"

    def item(payload: Any) -> bytes:
        return json.dumps({"items": [{"community_id": c.id, "device_id": dev(c, "sos_button"),
                                      "payload": payload}]}).encode()

    deep = b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bodies: list[tuple[bytes, int, str]] = [
        (b'{"items": [\x00]}', 422, "malformed_json"),
        (b'{"items": ' + b"[" * 5000 + b"]" * 5000 + b"}", 422, "nesting_too_deep"),
        (b'{"items": [' + b"7" * 5000 + b"]}", 422, "number_too_large"),
        (b'{"items": [], "x": "\\ud800"}', 422, "invalid_text"),
        (b'{"items": [], "x": "\\u0000"}', 422, "invalid_text"),
        (deep, 413, "body_too_large"),
    ]
    async with httpx.AsyncClient(timeout=10) as http:
        for body, status, reason in bodies:
            r = await http.post(url, content=body, headers=signed(body))
            assert r.status_code == status, (reason, r.text[:300])
            assert r.json()["reason"] == reason, r.text[:300]
        # Hostile payloads inside a valid body: per-item rejections with reasons.
        for payload, reason in [("{\"msg_id\": \"q\\u0000\", \"ts\": 1, \"type\": \"sos\"}",
                                 "invalid_text"),
                                ({"msg_id": "q2", "ts": 1, "type": "sos", "x": [[[[[]]]]]},
                                 "schema_violation")]:
            body = item(payload)
            r = await http.post(url, content=body, headers=signed(body))
            assert r.status_code == 200, r.text[:300]
            assert r.json()["results"][0]["reason"] == reason
        nul_header = await http.post(url, content=b"{}", headers={
            "X-Eldercare-Gateway": GATEWAY, "Authorization": "Bearer \x01"})
        assert 400 <= nul_header.status_code < 500
