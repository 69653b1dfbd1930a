"""Per-process observability: a small HTTP server with /metrics (Prometheus), /healthz (the
process answers) and /readyz (its dependencies answer and it has subscribed), plus the Kafka
consumer lag of the process's consumer group as a gauge.

Each service process (`eldercare service NAME`) starts one when `metrics_binds` names it; the
console serves the same routes from its own app."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from foundation import db, kafka, logs, mqtt
from foundation.config import Settings

log = logs.get(__name__)

# The consumer group whose lag each service reports, and what it needs to be ready.
CONSUMER_GROUPS = {
    "detectors": ("eldercare-detectors", (kafka.EVENTS,)),
    "dispatcher": ("eldercare-dispatcher", (kafka.ALERTS,)),
    "store": ("eldercare-store", (kafka.EVENTS,)),
}
NEEDS = {
    "ingest": ("kafka", "mqtt", "database"), "detectors": ("kafka",),
    "dispatcher": ("kafka", "database"), "store": ("kafka", "database"),
    "console": ("kafka", "mqtt", "database", "migrations"),
}
LAG_INTERVAL_S = 10.0

_subscribed: set[str] = set()


def mark_subscribed(what: str = "main") -> None:
    """Called by a service once it consumes (MQTT subscribed, Kafka consumer started)."""
    _subscribed.add(what)


def mark_unsubscribed(what: str = "main") -> None:
    """Called when a service stops consuming (shutdown, reconnect)."""
    _subscribed.discard(what)


def subscribed() -> bool:
    return bool(_subscribed)


def local_binds(services: tuple[str, ...] = tuple(CONSUMER_GROUPS)) -> str:
    """`metrics_binds` serving each of `services` (by default every service process that has
    an endpoint of its own, as `eldercare up` runs them) on a free port of 127.0.0.1: for the
    tests and the benches."""
    from foundation import procs

    return ",".join(f"{name}=127.0.0.1:{procs.free_port()}" for name in services)


def parse_binds(text: str) -> dict[str, str]:
    """"detectors=0.0.0.0:9100,dispatcher=..." -> {"detectors": "0.0.0.0:9100", ...}."""
    binds: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, bind = item.partition("=")
        if not sep or ":" not in bind:
            raise ValueError(f"metrics bind {item!r} is not service=host:port")
        binds[name.strip()] = bind.strip()
    return binds


async def _probe(check: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(check, 4)
    except Exception as exc:
        return f"down: {type(exc).__name__}: {exc}"[:300]
    return "ok"


async def _migrations(url: str) -> None:
    """Raise unless every migration this code ships has been applied."""
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=2) as c:
        rows = await (await c.execute("SELECT version FROM schema_migrations")).fetchall()
    missing = sorted({v for v, _ in db.migration_files()} - {r[0] for r in rows})
    if missing:
        raise RuntimeError(f"not applied: {', '.join(missing)} (run `eldercare db upgrade`)")


async def readiness(settings: Settings, service: str, started: bool) -> dict[str, str]:
    """Every check /readyz makes for `service`; ready when all are "ok"."""
    checks: dict[str, Awaitable[None]] = {}
    needs = NEEDS.get(service, ("kafka",))
    if "kafka" in needs:
        checks["kafka"] = kafka.check(settings.kafka_bootstrap, settings)
    if "mqtt" in needs:
        checks["mqtt"] = mqtt.check(settings.mqtt_url)
    if "database" in needs:
        checks["database"] = db.check(settings.database_url)
    if "migrations" in needs:
        checks["migrations"] = _migrations(settings.database_url)
    results = await asyncio.gather(*(_probe(c) for c in checks.values()))
    found = dict(zip(checks, results, strict=True))
    found["subscribed"] = "ok" if started else "down: not consuming yet"
    return found


_gauges: dict[str, Gauge] = {}


def _lag_gauge(service: str) -> Gauge:
    if service not in _gauges:
        _gauges[service] = Gauge(
            f"eldercare_{service}_consumer_lag",
            "Records on the topic not yet committed by this service's consumer group",
            ["topic", "partition"])
    return _gauges[service]


class LagProbe:
    """Reads a group's lag: a consumer that never subscribes, so it does not disturb the
    group's members; it only reads the group's commits (OffsetFetch) and the log ends. Kept for
    the life of the report (a new client every report cost each service a connection, its
    handshake and the metadata of every topic every `LAG_INTERVAL_S`)."""

    def __init__(self, settings: Settings, group: str) -> None:
        from aiokafka import AIOKafkaConsumer

        from foundation.kafka import security

        self._consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                          group_id=group, enable_auto_commit=False,
                                          **security(settings))
        self._started = False

    async def lag(self, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
        """(topic, partition) -> end offset minus the group's committed offset (all if
        none)."""
        from aiokafka import TopicPartition

        probe = self._consumer
        if not self._started:
            await probe.start()
            self._started = True
            await probe.topics()  # loads the metadata of every topic
        tps = [TopicPartition(t, p) for t in topics for p in probe.partitions_for_topic(t) or ()]
        if not tps:
            await probe.topics()  # a topic made since: looked up again next time
            return {}
        ends = await probe.end_offsets(tps)
        lags = {}
        for tp in tps:
            committed = await probe.committed(tp)
            lags[(tp.topic, tp.partition)] = max(0, ends[tp] - (committed or 0))
        return lags

    async def close(self) -> None:
        if self._started:
            await self._consumer.stop()


async def consumer_lag(settings: Settings, group: str, topics: tuple[str, ...]
                       ) -> dict[tuple[str, int], int]:
    """(topic, partition) -> end offset minus the group's committed offset (all if none)."""
    probe = LagProbe(settings, group)
    try:
        return await probe.lag(topics)
    finally:
        await probe.close()


async def _report_lag(settings: Settings, service: str, gauge: Gauge,
                      stop: asyncio.Event) -> None:
    group, topics = CONSUMER_GROUPS[service]
    probe = LagProbe(settings, group)
    try:
        while not stop.is_set():
            try:
                for (topic, partition), lag in (await probe.lag(topics)).items():
                    gauge.labels(topic, str(partition)).set(lag)
            except Exception as exc:  # a metric is never worth stopping the service for
                log.warning("consumer lag not measured", group=group, error=str(exc))
                await probe.close()  # a new client next time (e.g. after a broker roll)
                probe = LagProbe(settings, group)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LAG_INTERVAL_S)
    finally:
        await probe.close()


def app(settings: Settings, service: str) -> Callable[..., Awaitable[None]]:
    """The ASGI app of a service's observability endpoint."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "service": service})

    async def readyz(request: Request) -> Response:
        checks = await readiness(settings, service, subscribed())
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, "service": service, "notify": settings.notify, **checks},
                            status_code=200 if ok else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz),
                             Route("/readyz", readyz)])


async def serve(settings: Settings, service: str, stop: asyncio.Event) -> None:
    """Serve /metrics, /healthz and /readyz for `service` until `stop`, when configured."""
    bind = parse_binds(settings.metrics_binds).get(service)
    if not bind:
        return
    import uvicorn

    from foundation.http_server import Server

    host, port = bind.rsplit(":", 1)
    # Bound here, so a port in use is an OSError we can log (uvicorn would exit the process).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        sock.close()
        log.error("observability endpoint not started", service=service, bind=bind,
                  error=str(exc))
        return
    server = Server(uvicorn.Config(app(settings, service), log_level="warning", lifespan="off"))
    tasks = [asyncio.create_task(server.serve(sockets=[sock]))]
    if service in CONSUMER_GROUPS:
        tasks.append(asyncio.create_task(_report_lag(settings, service, _lag_gauge(service),
                                                     stop)))
    log.info("observability endpoint", service=service, bind=bind)
    await stop.wait()
    server.stop()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, SystemExit):
            log.warning("observability endpoint failed", error=str(result))


@contextlib.asynccontextmanager
async def running(settings: Settings, service: str) -> AsyncIterator[None]:
    """Run the endpoint beside a service; a failure to bind is logged, not fatal."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, service, stop))
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
