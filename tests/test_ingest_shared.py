"""Two ingest workers in one shared-subscription group on mosquitto split the devices' messages:
every message becomes exactly one event on Kafka, and both workers take part. Over ingest's
default MQTT 3.1.1 session (mosquitto shares subscriptions with 3.1.1 clients too) and over an
MQTT 5 one (`ELDERCARE_INGEST_MQTT_SESSION=5`)."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.registry import Community
from eldercare.stack import embedded
from foundation import kafka, procs
from foundation.config import Settings, child_env
from foundation.mqtt import MqttTarget, event_topic
from tests.helpers import eventually, read_topic
from tests.test_ingest_service import dev, metric

WORKERS = 2


@pytest.mark.timeout(240)
@pytest.mark.parametrize("session", ["3.1.1", "5"])
async def test_shared_workers_take_each_message_once(
    infra: Settings, home: Community, tmp_path_factory: pytest.TempPathFactory, session: str,
) -> None:
    workdir: Path = tmp_path_factory.mktemp(f"shared-{session}")
    port = procs.free_port()
    (workdir / "mosquitto.conf").write_text(embedded.mosquitto_config(port))
    broker = procs.spawn(["/usr/sbin/mosquitto", "-c", str(workdir / "mosquitto.conf")],
                         workdir / "mosquitto.log")
    procs.wait_for_port(port, broker)
    settings = infra.model_copy(update={
        "mqtt_url": f"mqtt://127.0.0.1:{port}", "mqtt_protocol": "5",
        "mqtt_shared_group": f"s{uuid.uuid4().hex[:6]}", "ingest_mqtt_session": session,
        "ingest_http_bind": f"127.0.0.1:{procs.free_port()}",
    })
    log = workdir / "ingest.log"
    ingest = procs.spawn([sys.executable, "-m", "eldercare.cli", "ingest", "--workers",
                          str(WORKERS)], log, child_env(settings, clean=True))
    host, first = settings.ingest_http_bind.rsplit(":", 1)
    try:
        def subscribed() -> list[dict[str, Any]]:
            assert ingest.poll() is None, log.read_text()
            lines = log.read_text().splitlines() if log.exists() else []
            return [json.loads(line) for line in lines if "ingest subscribed" in line]

        done = await eventually(lambda: len(subscribed()) >= WORKERS, 60,
                                "both workers to subscribe")
        assert done
        for line in subscribed():
            assert line["mqtt"] == session
            assert line["subscriptions"][0].startswith(f"$share/{settings.mqtt_shared_group}/")
        # The broker's own view: "(p2, ..." is a 3.1.1 connection, "(p5, ..." an MQTT 5 one.
        level = {"3.1.1": "p2", "5": "p5"}[session]
        workers = [f"as {line['client_id']} ({level}," for line in subscribed()]
        broker_log = (workdir / "mosquitto.log").read_text()
        assert all(w in broker_log for w in workers), broker_log[-2000:]

        tag, total = uuid.uuid4().hex[:6], 400
        topic = event_topic(home.id, dev(home, "smart_watch"))
        async with MqttTarget.parse(settings.mqtt_url).client(
                max_inflight_messages=200) as client:
            await asyncio.gather(*(client.publish(topic, json.dumps(
                {"msg_id": f"s{tag}-{n}", "ts": time.time(), "type": "steps", "steps": n}),
                qos=1) for n in range(total)))

        def mine(r: dict[str, Any]) -> bool:
            return f"/s{tag}-" in str(r.get("event_id", ""))

        records = await read_topic(infra.kafka_bootstrap, kafka.EVENTS,
                                   lambda rs: len({r["event_id"] for r in rs if mine(r)}) >= total,
                                   timeout=60)
        copies = collections.Counter(r["event_id"] for r in records if mine(r))
        assert len(copies) == total and set(copies.values()) == {1}, "each message once"

        async def shares() -> list[float]:
            async with httpx.AsyncClient() as http:
                return [metric((await http.get(f"http://{host}:{int(first) + w}/metrics",
                                               timeout=5)).text,
                               "eldercare_ingest_accepted_total", source="mqtt")
                        for w in range(WORKERS)]

        async def counted() -> list[float] | None:
            got = await shares()
            return got if sum(got) >= total else None

        # Had each worker been given every message, the faster one would have all of them.
        split = await eventually(counted, 30, "the workers' counters")
        assert sum(split) == total and all(0 < s < total for s in split), split
    finally:
        procs.stop(ingest)
        procs.stop(broker)
