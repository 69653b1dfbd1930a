"""The ingest invariant, by property-based testing over the real path (mosquitto -> `eldercare
service ingest` -> tansu): whatever bytes a device publishes, each message becomes exactly one
canonical event or one dead-letter record, ingest never reconnects over it, and a valid SOS
published afterwards is still taken."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devices.registry import Community
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic
from tests.helpers import eventually
from tests.test_ingest_poison import Tail, nested, reconnects
from tests.test_ingest_service import IngestRun, dev, serving, signed, start_run

KINDS = ("sos_button", "smart_watch", "smart_cane", "bp_meter")
TYPES = ("sos", "hr", "accel", "bp", "heartbeat", "ok", "steps", "spo2", "fall")
_unique = itertools.count()

scalars = (st.none() | st.booleans() | st.integers(-(10**30), 10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# Near-valid device messages: the right envelope, the fields of some kind, any values.
messages = st.fixed_dictionaries(
    {"msg_id": st.just("m") | st.text(max_size=70), "type": st.sampled_from(TYPES),
     "ts": st.just("now") | st.floats(1.6e9, 1.9e12) | json_values},
    optional={"bpm": st.integers(0, 300) | json_values,
              "rate_hz": st.just(50) | json_values,
              "samples": st.lists(st.tuples(*[st.floats(-40, 40)] * 3), max_size=20)
              | json_values,
              "systolic": st.integers(60, 250), "diastolic": st.integers(30, 150),
              "battery": st.integers(-5, 105), "extra": json_values})
NASTY = [nested(5000), nested(40), b'{"msg_id": "h", "ts": ' + b"9" * 4400 + b"}",
         b'{"msg_id": "z\\u0000", "ts": 1, "type": "sos"}',
         b'{"msg_id": "s\\ud800", "ts": 1, "type": "sos"}', b"", b"\xff\xfe\x00", b"NaN",
         b"\xef\xbb\xbf{}", b'{"msg_id": "b", "ts": 1e999, "type": "sos"}',
         json.dumps({"msg_id": "w", "ts": 1, "type": "accel", "rate_hz": 50,
                     "samples": [[99.5, 99.5, 99.5]] * 2500}).encode(),
         b"[" * 70_000]


def _encoded(value: Any) -> bytes:
    if isinstance(value, dict) and value.get("ts") == "now":
        value = {**value, "ts": time.time()}
    return json.dumps(value).encode()


payloads = (st.binary(max_size=300) | json_values.map(_encoded) | messages.map(_encoded)
            | st.sampled_from(NASTY))
batches = st.lists(st.tuples(st.sampled_from(KINDS), payloads), min_size=1, max_size=6)


def unique_ids(raw: bytes) -> tuple[bytes, str | None]:
    """The payload with a msg_id of its own (so no two examples are duplicates), and that id;
    bytes that do not decode to an object with a string msg_id are left alone."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return raw, None
    if not (isinstance(body, dict) and isinstance(body.get("msg_id"), str)):
        return raw, None
    msg_id = f"{body['msg_id'][:40]}-{next(_unique)}-{uuid.uuid4().hex[:6]}"
    return json.dumps({**body, "msg_id": msg_id}).encode(), msg_id


@pytest.fixture(scope="module")
def fuzz_run(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestRun]:
    yield from serving(start_run(infra, tmp_path_factory.mktemp("fuzz")))


async def _publish_and_account(
    run: IngestRun, c: Community, bootstrap: str, batch: list[tuple[str, bytes]],
) -> None:
    tail = Tail(bootstrap)
    await tail.start()
    try:
        sent = []
        button = dev(c, "sos_button")
        sos_id = f"sentinel-{uuid.uuid4().hex[:8]}"
        async with MqttTarget.parse(run.settings.mqtt_url).client() as client:
            for kind, raw in batch:
                payload, msg_id = unique_ids(raw)
                device = dev(c, kind)
                await client.publish(event_topic(c.id, device), payload, qos=1)
                sent.append((device, event_topic(c.id, device), payload, msg_id))
            await client.publish(event_topic(c.id, button), json.dumps(
                {"msg_id": sos_id, "ts": time.time(), "type": "sos"}), qos=1)

        def outcome(device: str, topic: str, payload: bytes, msg_id: str | None) -> int:
            letter = tail.letter_of(topic, payload) is not None
            event = msg_id is not None and tail.event(f"{device}/{msg_id}") is not None
            return letter + event

        async def accounted() -> bool:
            await tail.poll()
            return tail.event(f"{button}/{sos_id}") is not None and all(
                outcome(*s) for s in sent)

        with contextlib.suppress(AssertionError):
            await eventually(accounted, 20, "every payload's outcome")
        for s in sent:
            assert outcome(*s) == 1, f"payload {s[2][:200]!r}: {outcome(*s)} outcomes"
        assert tail.event(f"{button}/{sos_id}"), "the valid SOS after them was not taken"
    finally:
        await tail.consumer.stop()


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=batches)
@example(batch=[("sos_button", p) for p in NASTY[:6]])
@example(batch=[("smart_cane", p) for p in NASTY[6:]])
def test_every_payload_becomes_one_event_or_one_dead_letter(
    fuzz_run: IngestRun, home: Community, infra: Settings, batch: list[tuple[str, bytes]],
) -> None:
    before = reconnects(fuzz_run)
    asyncio.run(_publish_and_account(fuzz_run, home, infra.kafka_bootstrap, batch))
    assert fuzz_run.worker is not None and fuzz_run.worker.poll() is None
    assert reconnects(fuzz_run) == before, fuzz_run.log.read_text()[-3000:]


def _items(c: Community) -> st.SearchStrategy[bytes]:
    item = st.fixed_dictionaries({
        "community_id": st.just(c.id) | st.text(max_size=5),
        "device_id": st.sampled_from([dev(c, k) for k in KINDS]) | st.text(max_size=5),
        "payload": messages | json_values | st.binary(max_size=80).map(
            lambda b: b.decode("latin-1"))}) | json_values
    bodies = st.lists(item, max_size=5).map(lambda items: {"items": items}) | json_values
    return (bodies.map(lambda b: json.dumps(b).encode()) | st.binary(max_size=300)
            | st.sampled_from(NASTY))


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_http_gateway_answers_every_body_with_200_or_a_4xx_reason(
    fuzz_run: IngestRun, home: Community, data: st.DataObject,
) -> None:
    body = data.draw(_items(home))
    r = httpx.post(f"{fuzz_run.http}/ingest/v1/batch", content=body, headers=signed(body),
                   timeout=10)
    assert r.status_code in (200, 413, 422), (r.status_code, r.text[:300], body[:200])
    answer = r.json()
    if r.status_code == 200:
        statuses = {x["status"] for x in answer["results"]}
        assert statuses <= {"accepted", "duplicate", "rejected"}
        assert all(x.get("reason") for x in answer["results"] if x["status"] == "rejected")
    else:
        assert answer["reason"] and answer["detail"]
    assert fuzz_run.worker is not None and fuzz_run.worker.poll() is None
