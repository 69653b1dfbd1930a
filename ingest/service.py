"""The ingest service: the MQTT consumer and the HTTP gateway (with /metrics) in one process,
sharing one Kafka producer, device directory and de-duplication window."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from foundation import collector, kafka, logs
from foundation.config import Settings
from foundation.http_server import Server
from ingest.dedup import recall_within
from ingest.directory import DeviceDirectory
from ingest.event_batches import KeyPartitioner
from ingest.http_gateway import create_app
from ingest.intake import Ingest
from ingest.mqtt_gateway import consume

log = logs.get(__name__)


def http_bind(settings: Settings) -> tuple[str, int]:
    """Worker N listens on the configured port + N, so workers on one host do not collide."""
    host, port = settings.ingest_http_bind.rsplit(":", 1)
    return host, int(port) + settings.ingest_worker


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run MQTT ingest and the HTTP gateway until `stop` is set."""
    directory = DeviceDirectory(settings.database_url)
    await directory.load()
    # Big batches: with up to 1000 MQTT messages in flight per worker, one elder's partition
    # would otherwise be drained 16 KiB (~35 events) per round trip.
    # linger 5 ms: fewer, fuller produce requests under load (each costs this process more
    # CPU than a few dozen events), still far below a person's notice for an SOS.
    producer = kafka.producer(settings, max_batch_size=512 * 1024, linger_ms=5,
                              partitioner=KeyPartitioner())
    await producer.start()
    ingest = Ingest(settings, producer, directory)
    # Before the first message: what was produced before a restart is not produced again.
    await recall_within(settings, ingest.recent, settings.ingest_dedup_window_s)
    collector.settle()  # before the first message
    host, port = http_bind(settings)
    server = Server(uvicorn.Config(
        create_app(ingest), host=host, port=port, log_level="warning",
        timeout_graceful_shutdown=2,
    ))
    serving: asyncio.Task[None] | None = None
    try:
        # Bound here so a busy port costs the HTTP gateway, not the MQTT ingest (uvicorn exits).
        sock = socket.create_server((host, port))
    except OSError as exc:
        log.error("ingest http gateway not started", bind=f"{host}:{port}", error=str(exc))
    else:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        log.info("ingest http gateway", bind=f"{host}:{port}", worker=settings.ingest_worker)
    try:
        await consume(ingest, settings, stop)
    finally:
        server.stop()
        if serving is not None:
            await serving
        await producer.stop()
        await directory.close()
