"""/metrics, /healthz and /readyz of the service processes and the console, consumer lag, and a
service stopping cleanly on SIGTERM — against the real brokers and database."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from foundation import observability, procs
from foundation.config import Settings, child_env
from tests.helpers import eventually


def _env(settings: Settings) -> dict[str, str]:
    return child_env(settings)


async def _get(url: str) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient() as client:
            return await client.get(url, timeout=10)
    except httpx.HTTPError:
        return None


def test_parse_binds_reads_service_host_port_pairs() -> None:
    assert observability.parse_binds(" detectors=0.0.0.0:9100, store=127.0.0.1:9103,") == {
        "detectors": "0.0.0.0:9100", "store": "127.0.0.1:9103"}
    with pytest.raises(ValueError, match="service=host:port"):
        observability.parse_binds("detectors:9100")


async def test_consumer_lag_counts_records_the_group_has_not_committed(infra: Settings) -> None:
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(5):
            await producer.send_and_wait(topic, b"x", key=b"k", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records = []
        while len(records) < 2:  # take two, commit them, leave three
            for recs in (await consumer.getmany(timeout_ms=500, max_records=2)).values():
                records.extend(recs)
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "")})
    finally:
        await consumer.stop()
    lag = await observability.consumer_lag(infra, group, (topic,))
    assert lag[(topic, 0)] == 3 and sum(lag.values()) == 3


async def test_service_endpoint_then_graceful_stop(infra: Settings, tmp_path: Path) -> None:
    port = procs.free_port()
    settings = infra.model_copy(update={"metrics_binds": f"detectors=127.0.0.1:{port}",
                                        "data_dir": tmp_path})
    log = (tmp_path / "detectors.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "eldercare.cli", "service", "detectors"],  # noqa: ASYNC220
                            env=_env(settings), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async def ready() -> httpx.Response | None:
            r = await _get(f"{base}/readyz")
            return r if r is not None and r.status_code == 200 else None

        body = (await eventually(ready, 60, "detectors /readyz")).json()
        assert body["subscribed"] == "ok" and body["kafka"] == "ok"
        assert body["notify"] == settings.notify  # which channel notifications take
        health = await _get(f"{base}/healthz")
        assert health is not None and health.status_code == 200

        async def lag_reported() -> str | None:
            r = await _get(f"{base}/metrics")
            text = r.text if r is not None else ""
            return text if "eldercare_detectors_consumer_lag{" in text else None

        await eventually(lag_reported, 30, "consumer lag on /metrics")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0  # finished its batch, committed, closed cleanly
        assert await _get(f"{base}/healthz") is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


async def test_console_readyz_and_service_endpoints_under_up(platform: Settings) -> None:
    async def ready() -> httpx.Response | None:
        r = await _get(f"{platform.public_base_url}/readyz")
        return r if r is not None and r.status_code == 200 else None

    body = (await eventually(ready, 60, "console /readyz")).json()
    assert body == {"ok": True, "kafka": "ok", "mqtt": "ok", "database": "ok",
                    "migrations": "ok", "subscribed": "ok", "notify": platform.notify}
    binds = observability.parse_binds(platform.metrics_binds)
    for service in ("detectors", "dispatcher"):
        async def metrics(service: str = service) -> str | None:
            r = await _get(f"http://{binds[service]}/metrics")
            return r.text if r is not None and r.status_code == 200 else None

        text = await eventually(metrics, 60, f"{service} /metrics")
        assert "process_cpu_seconds_total" in text
