"""The ingest service as an operator runs it (`eldercare service ingest`), against real mosquitto
and tansu: bad input, duplicates, last wills, Zigbee2MQTT, the HTTP gateway, and SIGKILL under
a QoS 1 flood. Each test module starts its own mosquitto and ingest processes so that killing
them never disturbs the shared `platform`; PostgreSQL and Kafka are the session's `infra`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from devices.registry import Community, save
from eldercare.stack import embedded
from foundation import kafka, procs
from foundation.config import Settings, child_env
from foundation.mqtt import MqttTarget, event_topic
from ingest import gateway_auth
from tests.conftest import make_community
from tests.helpers import eventually, read_topic

GATEWAY, SECRET = "acme-cloud", "acme-secret-1"


@dataclass
class IngestRun:
    """A private mosquitto and one ingest worker process using it."""

    settings: Settings
    workdir: Path
    broker: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes] | None = None
    _subscribed: int = 0

    @property
    def http(self) -> str:
        return f"http://{self.settings.ingest_http_bind}"

    @property
    def log(self) -> Path:
        return self.workdir / "ingest.log"

    def start(self) -> None:
        """Start the worker; `ready()` waits until it has subscribed."""
        self._subscribed = self.log.read_text().count("ingest subscribed") \
            if self.log.exists() else 0
        env = child_env(self.settings, clean=True)
        self.worker = procs.spawn([sys.executable, "-m", "eldercare.cli", "service", "ingest"],
                                  self.log, env)

    async def ready(self) -> None:
        def subscribed() -> bool:
            assert self.worker is not None and self.worker.poll() is None, self.log.read_text()
            return self.log.exists() and \
                self.log.read_text().count("ingest subscribed") > self._subscribed

        await eventually(subscribed, 60, "ingest to subscribe")

    def kill(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()

    def stop(self) -> None:
        if self.worker is not None:
            procs.stop(self.worker)
        procs.stop(self.broker)


def serving(run: IngestRun) -> Iterator[IngestRun]:
    """For a module fixture: `run` once it is ready, stopped when the module is done."""
    asyncio.run(run.ready())
    yield run
    run.stop()


def start_run(infra: Settings, workdir: Path, **settings: Any) -> IngestRun:
    port = procs.free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(embedded.mosquitto_config(port))  # anonymous: devices and zigbee2mqtt
    broker = procs.spawn(["/usr/sbin/mosquitto", "-c", str(conf)], workdir / "mosquitto.log")
    procs.wait_for_port(port, broker)
    run = IngestRun(infra.model_copy(update={
        "mqtt_url": f"mqtt://127.0.0.1:{port}",
        "mqtt_shared_group": f"t{uuid.uuid4().hex[:6]}",
        "ingest_http_bind": f"127.0.0.1:{procs.free_port()}",
        "ingest_gateway_keys": f"{GATEWAY}={SECRET},other=other-secret",
        "ingest_gateway_scopes": f"{GATEWAY}=*,other=*",
        "ingest_http_max_body": 64 * 1024, "ingest_http_max_items": 20,
        **settings,
    }), workdir, broker)
    run.start()
    return run

FLOOD_RATE = 1000.0  # messages per second in the SIGKILL floods


@pytest.fixture(scope="module")
def ingest_run(
    infra: Settings, home: Community, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[IngestRun]:
    pir = next(d for d in home.elders[0].devices if d.kind == "motion_sensor")
    yield from serving(start_run(infra, tmp_path_factory.mktemp("ingest"),
                                 ingest_zigbee_devices=f"hall_pir={pir.id}"))


def dev(c: Community, kind: str) -> str:
    return next(d.id for d in c.elders[0].devices if d.kind == kind)


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.split()[-1])
    return 0.0


async def metrics_text(run: IngestRun) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{run.http}/metrics", timeout=5)).text


def events_for(records: list[dict[str, Any]], community: Community) -> list[dict[str, Any]]:
    return [r for r in records if r.get("community_id") == community.id]


async def test_bad_inputs_table_each_with_its_outcome_on_kafka(
    ingest_run: IngestRun, home: Community, infra: Settings,
) -> None:
    c = home
    now = time.time()
    other = make_community()
    save(infra.database_url, [other])
    hr = {"msg_id": "hr-1", "ts": now, "type": "hr", "bpm": 72}
    # (name, topic, payload, expected): expected is a dead-letter reason, or "accepted".
    table: list[tuple[str, str, bytes, str]] = [
        ("truncated JSON", event_topic(c.id, dev(c, "sos_button")),
         b'{"msg_id": "t1", "ts": 1, "type": "so', "malformed_json"),
        ("wrong type", event_topic(c.id, dev(c, "bp_meter")),
         json.dumps({"msg_id": "w1", "ts": now, "type": "bp", "systolic": "high",
                     "diastolic": 80}).encode(), "schema_violation"),
        ("missing field", event_topic(c.id, dev(c, "door_contact")),
         json.dumps({"msg_id": "m1", "ts": now, "type": "door"}).encode(), "schema_violation"),
        ("out of range", event_topic(c.id, dev(c, "smart_watch")),
         json.dumps({**hr, "msg_id": "r1", "bpm": 400}).encode(), "out_of_range"),
        ("huge payload", event_topic(c.id, dev(c, "smart_cane")),
         json.dumps({"msg_id": "h1", "ts": now, "type": "accel", "rate_hz": 50,
                     "samples": [[0.1, 0.2, 0.3]] * 4000}).encode(), "payload_too_large"),
        ("unknown device", event_topic(c.id, f"ghost-{c.id}"),
         json.dumps({**hr, "msg_id": "u1"}).encode(), "unknown_device"),
        ("another community's topic", event_topic(other.id, dev(c, "smart_watch")),
         json.dumps({**hr, "msg_id": "x1"}).encode(), "topic_mismatch"),
        ("unknown channel", f"eldercare/v1/{c.id}/{dev(c, 'smart_watch')}/config",
         json.dumps({**hr, "msg_id": "x2"}).encode(), "bad_topic"),
        ("kind cannot send it", event_topic(c.id, dev(c, "bp_meter")),
         json.dumps({"msg_id": "k1", "ts": now, "type": "sos"}).encode(), "type_not_allowed"),
        ("mg/dL glucose", event_topic(c.id, dev(c, "glucose_meter")),
         json.dumps({"msg_id": "g1", "ts": now, "type": "glucose", "value": 126,
                     "unit": "mg/dL"}).encode(), "accepted"),
        ("future timestamp", event_topic(c.id, dev(c, "sos_button")),
         json.dumps({"msg_id": "f1", "ts": (now + 86400) * 1000, "type": "sos"}).encode(),
         "accepted"),
        ("duplicate (first copy)", event_topic(c.id, dev(c, "smart_watch")),
         json.dumps(hr).encode(), "accepted"),
    ]
    before = metric(await metrics_text(ingest_run), "eldercare_ingest_duplicates_total",
                    source="mqtt")
    async with MqttTarget.parse(ingest_run.settings.mqtt_url).client() as client:
        for _, topic, payload, _ in table:
            await client.publish(topic, payload, qos=1)
        await client.publish(event_topic(c.id, dev(c, "smart_watch")), json.dumps(hr), qos=1)

    async def duplicate_counted() -> bool:
        text = await metrics_text(ingest_run)
        return metric(text, "eldercare_ingest_duplicates_total", source="mqtt") > before

    await eventually(duplicate_counted, 30, "the duplicate to be counted")
    rejected = [(n, t, p, r) for n, t, p, r in table if r != "accepted"]
    topics = {t for _, t, _, _ in rejected}
    letters = await read_topic(
        infra.kafka_bootstrap, kafka.DEADLETTER,
        lambda rs: sum(r["topic"] in topics for r in rs) >= len(rejected))
    for name, topic, payload, reason in rejected:
        match = [r for r in letters
                 if r["topic"] == topic and base64.b64decode(r["payload_b64"]) == payload]
        assert match, f"{name}: no dead letter"
        assert match[0]["reason"] == reason, (name, match[0])
        assert match[0]["detail"] and match[0]["source"] == "mqtt"
    by_reason = {r["reason"]: r["detail"] for r in letters if r["topic"] in topics}
    assert "bpm" in by_reason["out_of_range"] and "400" in by_reason["out_of_range"]

    events = events_for(await read_topic(
        infra.kafka_bootstrap, kafka.EVENTS,
        lambda rs: len(events_for(rs, c)) >= 3), c)
    ids = [e["event_id"] for e in events]
    glucose = next(e for e in events if e["type"] == "glucose")
    assert glucose["data"]["value"] == pytest.approx(6.99, abs=0.01)
    assert glucose["data"]["unit"] == "mmol/L"
    future = next(e for e in events if e["event_id"].endswith("/f1"))
    assert future["flags"] == ["clock_future"]
    assert future["event_time"] == future["received_at"]
    assert ids.count(f"{dev(c, 'smart_watch')}/hr-1") == 1
    assert len(ids) == 3, ids


async def test_last_will_turns_into_an_offline_event(
    ingest_run: IngestRun, home: Community, infra: Settings,
) -> None:
    c, watch = home, dev(home, "smart_watch")
    status = f"eldercare/v1/{c.id}/{watch}/status"
    target = MqttTarget.parse(ingest_run.settings.mqtt_url)
    will = aiomqtt.Will(status, b'{"online": false}', qos=1, retain=True)
    device = target.client(identifier=watch, will=will)
    with contextlib.suppress(aiomqtt.MqttError):
        async with device:
            await device.publish(status, json.dumps(
                {"online": True, "battery": 64, "msg_id": "on-1", "ts": time.time()}), qos=1)
            sock = device._client.socket()
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)  # the connection drops without DISCONNECT: last will
    events = await read_topic(
        infra.kafka_bootstrap, kafka.EVENTS,
        lambda rs: any(r.get("device_id") == watch and r["type"] == "offline" for r in rs))
    offline = next(r for r in events if r.get("device_id") == watch and r["type"] == "offline")
    assert offline["data"] == {"online": False, "reason": "last_will"}
    online = next(r for r in events if r.get("device_id") == watch and r["type"] == "online")
    assert online["data"] == {"online": True, "battery": 64}


async def test_zigbee2mqtt_messages_become_canonical_events(
    ingest_run: IngestRun, home: Community, infra: Settings,
) -> None:
    c = home
    door, smoke, pir = dev(c, "door_contact"), dev(c, "smoke_alarm"), dev(c, "motion_sensor")
    async with MqttTarget.parse(ingest_run.settings.mqtt_url).client() as client:
        await client.publish("zigbee2mqtt/hall_pir", json.dumps(
            {"occupancy": True, "battery": 91, "linkquality": 87, "voltage": 3000}), qos=1)
        await client.publish(f"zigbee2mqtt/{door}", json.dumps(
            {"contact": False, "linkquality": 40}), qos=1)
        await client.publish(f"zigbee2mqtt/{smoke}", json.dumps({"smoke": True}), qos=1)
        await client.publish("zigbee2mqtt/unknown_sensor", json.dumps({"occupancy": True}), qos=1)
        await client.publish(f"zigbee2mqtt/{door}", b'{"contact": "open"}', qos=1)

    def ours(rs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(r["device_id"], r["type"]) for r in rs if r.get("community_id") == c.id
                and r.get("source") == "zigbee2mqtt"]

    events = await read_topic(infra.kafka_bootstrap, kafka.EVENTS, lambda rs: len(ours(rs)) >= 5)
    assert sorted(ours(events)) == sorted([(pir, "motion"), (pir, "heartbeat"), (door, "door"),
                                           (door, "heartbeat"), (smoke, "smoke")])
    mine = [r for r in events if r.get("community_id") == c.id and r["source"] == "zigbee2mqtt"]
    hb = next(r for r in mine if r["device_id"] == pir and r["type"] == "heartbeat")
    assert hb["data"] == {"battery": 91, "lqi": 87}
    assert next(r for r in mine if r["type"] == "door")["data"] == {"open": True}
    letters = await read_topic(
        infra.kafka_bootstrap, kafka.DEADLETTER,
        lambda rs: sum(r["topic"] in {"zigbee2mqtt/unknown_sensor", f"zigbee2mqtt/{door}"}
                       for r in rs) >= 2)
    reasons = {r["topic"]: r["reason"] for r in letters if r["source"] == "zigbee2mqtt"}
    assert reasons["zigbee2mqtt/unknown_sensor"] == "unknown_device"
    assert reasons[f"zigbee2mqtt/{door}"] == "schema_violation"


async def test_zigbee2mqtt_sos_button_leak_tamper_and_availability(
    ingest_run: IngestRun, home: Community, infra: Settings,
) -> None:
    """Issue 16: an SOS button's action, a leak, tamper and a device dropping off the mesh."""
    c = home
    button, leak = dev(c, "sos_button"), dev(c, "water_leak_sensor")
    async with MqttTarget.parse(ingest_run.settings.mqtt_url).client() as client:
        await client.publish(f"zigbee2mqtt/{button}", json.dumps({"action": "emergency"}), qos=1)
        await client.publish(f"zigbee2mqtt/{leak}", json.dumps(
            {"water_leak": True, "tamper": True}), qos=1)
        await client.publish(f"zigbee2mqtt/{leak}/availability",
                             json.dumps({"state": "offline"}), qos=1)

    def ours(rs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(r["device_id"], r["type"]) for r in rs if r.get("community_id") == c.id
                and r.get("source") == "zigbee2mqtt" and r["device_id"] in (button, leak)]

    events = await read_topic(infra.kafka_bootstrap, kafka.EVENTS, lambda rs: len(ours(rs)) >= 4)
    assert sorted(ours(events)) == sorted([(button, "sos"), (leak, "water_leak"),
                                           (leak, "tamper"), (leak, "offline")])


def signed(body: bytes, secret: str = SECRET, ts: float | None = None) -> dict[str, str]:
    stamp = str(int(ts if ts is not None else time.time()))
    return {"X-Eldercare-Gateway": GATEWAY, "X-Eldercare-Timestamp": stamp,
            "X-Eldercare-Signature": gateway_auth.signature(secret, stamp, body),
            "Content-Type": "application/json"}


async def test_http_gateway_authenticates_limits_and_answers_per_item(
    ingest_run: IngestRun, home: Community, infra: Settings,
) -> None:
    c, now = home, time.time()
    items = [
        {"community_id": c.id, "device_id": dev(c, "bp_meter"),
         "payload": {"msg_id": "bp-h1", "ts": now, "type": "bp", "systolic": 131,
                     "diastolic": 84}},
        {"community_id": c.id, "device_id": dev(c, "bp_meter"),
         "payload": {"msg_id": "bp-h1", "ts": now, "type": "bp", "systolic": 131,
                     "diastolic": 84}},
        {"community_id": c.id, "device_id": dev(c, "glucose_meter"),
         "payload": {"msg_id": "gl-h1", "ts": now, "type": "glucose", "value": 300}},
        {"community_id": c.id, "device_id": dev(c, "smart_watch"),
         "payload": '{"msg_id": "trunc'},
        {"community_id": c.id, "device_id": f"ghost-{c.id}",
         "payload": {"msg_id": "g", "ts": now, "type": "sos"}},
        {"device_id": "no-community"},
    ]
    body = json.dumps({"items": items}).encode()
    url = f"{ingest_run.http}/ingest/v1/batch"
    async with httpx.AsyncClient(timeout=10) as http:
        unknown = await http.post(url, content=body, headers={"X-Eldercare-Gateway": "nobody"})
        assert unknown.status_code == 401
        assert unknown.json()["reason"] == "unknown_gateway"
        forged = await http.post(url, content=body, headers=signed(body, secret="wrong"))
        assert forged.status_code == 401 and "signature" in forged.json()["detail"]
        stale = await http.post(url, content=body, headers=signed(body, ts=now - 3600))
        assert stale.status_code == 401 and "timestamp" in stale.json()["detail"]
        wrong_key = await http.post(url, content=body, headers={
            "X-Eldercare-Gateway": GATEWAY, "Authorization": "Bearer other-secret"})
        assert wrong_key.status_code == 401
        big = json.dumps({"items": [items[0]] * 1000}).encode()
        assert len(big) > ingest_run.settings.ingest_http_max_body
        oversize = await http.post(url, content=big, headers=signed(big))
        assert oversize.status_code == 413 and oversize.json()["reason"] == "body_too_large"
        many = json.dumps({"items": [items[0]] * 21}).encode()
        too_many = await http.post(url, content=many, headers=signed(many))
        assert too_many.status_code == 422 and "21 items" in too_many.json()["detail"]
        garbage = await http.post(url, content=b"{nope", headers=signed(b"{nope"))
        assert garbage.status_code == 422 and garbage.json()["reason"] == "malformed_json"

        ok = await http.post(url, content=body, headers=signed(body))
        assert ok.status_code == 200, ok.text
        results = ok.json()["results"]
        assert [r["status"] for r in results] == [
            "accepted", "duplicate", "rejected", "rejected", "rejected", "rejected"]
        assert [r.get("reason") for r in results[2:]] == [
            "out_of_range", "malformed_json", "unknown_device", "schema_violation"]
        assert "wrong unit" in results[2]["detail"]
        keyed = await http.post(url, json={"items": [{
            "community_id": c.id, "device_id": dev(c, "bp_meter"),
            "payload": {"msg_id": "bp-h2", "ts": now, "type": "bp", "systolic": 120,
                        "diastolic": 80}}]},
            headers={"X-Eldercare-Gateway": GATEWAY, "Authorization": f"Bearer {SECRET}"})
        assert keyed.status_code == 200 and keyed.json()["accepted"] == 1
        text = (await http.get(f"{ingest_run.http}/metrics")).text
    assert metric(text, "eldercare_ingest_accepted_total", source="http") >= 2
    assert metric(text, "eldercare_ingest_rejected_total", source="http",
                  reason="unknown_device") >= 1
    assert metric(text, "eldercare_ingest_kafka_produce_seconds_count") > 0

    meter = dev(c, "bp_meter")
    events = await read_topic(infra.kafka_bootstrap, kafka.EVENTS, lambda rs: sum(
        r.get("device_id") == meter and r["source"] == "http" for r in rs) >= 2)
    assert sorted(r["event_id"] for r in events if r.get("device_id") == meter
                  and r["source"] == "http") == [f"{meter}/bp-h1", f"{meter}/bp-h2"]
    letters = await read_topic(infra.kafka_bootstrap, kafka.DEADLETTER, lambda rs: any(
        r["source"] == "http" and r["topic"] == event_topic(c.id, f"ghost-{c.id}") for r in rs))
    assert any(r["source"] == "http" and r["reason"] == "out_of_range" for r in letters)


async def test_sigkill_during_a_qos1_flood_loses_no_acknowledged_message(
    infra: Settings, home: Community, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run = start_run(infra, tmp_path_factory.mktemp("kill"))
    await run.ready()
    watch = dev(home, "smart_watch")
    topic = event_topic(home.id, watch)
    tag = uuid.uuid4().hex[:6]
    total, acked = 4000, []
    try:
        async with MqttTarget.parse(run.settings.mqtt_url).client(
                max_inflight_messages=500) as client:

            async def send(n: int) -> None:
                # Paced: the flood lasts total/FLOOD_RATE s however fast ingest is, so the kill
                # lands in the middle of it on an idle machine too.
                await asyncio.sleep(n / FLOOD_RATE)
                msg_id = f"k{tag}-{n}"
                await client.publish(topic, json.dumps(
                    {"msg_id": msg_id, "ts": time.time(), "type": "steps", "steps": n}), qos=1)
                acked.append(msg_id)  # the broker's PUBACK: the publisher may now forget it

            async def accepted() -> float:
                text = await metrics_text(run)
                return metric(text, "eldercare_ingest_accepted_total", source="mqtt")

            flood = [asyncio.create_task(send(n)) for n in range(total)]

            async def busy() -> float:
                n = await accepted()
                return n if n >= 100 else 0.0

            before_kill = await eventually(busy, 60, "ingest to accept some of the flood")
            run.kill()
            await asyncio.gather(*flood)
        assert before_kill < total, "the kill came too late to prove anything"
        run.start()  # the same client id resumes the persistent session
        await run.ready()
        want = {f"{watch}/{m}" for m in acked}

        def have_all(rs: list[dict[str, Any]]) -> bool:
            return want <= {r.get("event_id") for r in rs}

        records = await read_topic(infra.kafka_bootstrap, kafka.EVENTS, have_all, timeout=90)
        got = [r["event_id"] for r in records if r.get("event_id") in want]
        assert len(acked) == total and set(got) == want
    finally:
        run.stop()


async def test_a_broker_restarted_without_persistence_gets_the_subscriptions_back(
    infra: Settings, home: Community, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """deploy/'s mosquitto restarted without its database (or any broker without persistence)
    no longer knows ingest's session or subscriptions: ingest reconnects, subscribes again,
    and a press made after that still becomes an event on Kafka."""
    run = start_run(infra, tmp_path_factory.mktemp("ingest-broker-restart"))
    try:
        await run.ready()
        run.broker.kill()  # no persistence in this broker's config: everything is forgotten
        run.broker.wait()
        run._subscribed = run.log.read_text().count("ingest subscribed")
        port = MqttTarget.parse(run.settings.mqtt_url).port
        run.broker = procs.spawn(["/usr/sbin/mosquitto", "-c", str(run.workdir / "mosquitto.conf")],
                                 run.workdir / "mosquitto.log")
        procs.wait_for_port(port, run.broker)
        await run.ready()  # subscribed again on the fresh broker
        button = dev(home, "sos_button")
        msg_id = f"after-restart-{uuid.uuid4().hex[:8]}"
        async with MqttTarget.parse(run.settings.mqtt_url).client(identifier=button) as device:
            await device.publish(f"eldercare/v1/{home.id}/{button}/event", json.dumps(
                {"msg_id": msg_id, "ts": time.time(), "type": "sos"}), qos=1)
        await read_topic(infra.kafka_bootstrap, kafka.EVENTS,
                         lambda rs: any(r.get("device_id") == button
                                        and msg_id in str(r.get("event_id", "")) for r in rs))
    finally:
        run.stop()


async def _lane_copies(bootstrap: str, msg_id: str) -> dict[str, list[bool]]:
    """Per topic (events, the priority lane): whether each record of the event whose id ends
    with `msg_id` carries the lane mark."""
    found: dict[str, list[bool]] = {kafka.EVENTS: [], kafka.URGENT: []}
    reader = AIOKafkaConsumer(kafka.EVENTS, kafka.URGENT, bootstrap_servers=bootstrap,
                              group_id=f"test-{uuid.uuid4().hex}",
                              auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await reader.start()
    try:
        deadline = time.monotonic() + 30
        while not all(found.values()):
            assert time.monotonic() < deadline, f"copies of {msg_id}: {found}"
            for tp, recs in (await reader.getmany(timeout_ms=200)).items():
                for r in recs:
                    if str(json.loads(r.value).get("event_id", "")).endswith(f"/{msg_id}"):
                        found[tp.topic].append(
                            any(k == kafka.URGENT_LANE_HEADER for k, _ in r.headers or ()))
    finally:
        await reader.stop()
    return found


async def test_an_sos_over_mqtt_or_http_is_also_on_the_priority_lane(
    ingest_run: IngestRun, home: Community, infra: Settings,
) -> None:
    button = dev(home, "sos_button")
    over_mqtt, over_http = (f"lane-{how}-{uuid.uuid4().hex[:8]}" for how in ("mqtt", "http"))
    async with MqttTarget.parse(ingest_run.settings.mqtt_url).client(identifier=button) as device:
        await device.publish(f"eldercare/v1/{home.id}/{button}/event", json.dumps(
            {"msg_id": over_mqtt, "ts": time.time(), "type": "sos"}), qos=1)
    body = json.dumps({"items": [{"community_id": home.id, "device_id": button, "payload": {
        "msg_id": over_http, "ts": time.time(), "type": "sos"}}]}).encode()
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{ingest_run.http}/ingest/v1/batch", content=body,
                                 headers=signed(body))
    assert answer.json()["results"][0]["status"] == "accepted", answer.text
    for msg_id in (over_mqtt, over_http):
        # Marked on the events topic (the first engine leaves its alert to the lane), and on
        # the lane, unmarked.
        copies = await _lane_copies(infra.kafka_bootstrap, msg_id)
        assert copies == {kafka.EVENTS: [True], kafka.URGENT: [False]}, msg_id
