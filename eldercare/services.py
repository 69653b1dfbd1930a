"""Running one service in this process until SIGINT/SIGTERM, then shutting down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from foundation import logs
from foundation.config import Settings

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]


def _registry() -> dict[str, ServiceMain]:
    # Imported lazily, inside each entry: a service process loads only what it runs (a start
    # of the whole stack imports in 4-8 processes at once on a 2-core machine; each one
    # importing every service cost ~1 s of that, see docs/reliability-stack.md).
    async def ingest(settings: Settings, stop: asyncio.Event) -> None:
        from ingest import service

        await service.run(settings, stop)

    async def detectors(settings: Settings, stop: asyncio.Event) -> None:
        from detectors import service

        await service.run(settings, stop)

    async def dispatcher(settings: Settings, stop: asyncio.Event) -> None:
        from dispatcher import service

        await service.run(settings, stop)

    async def console(settings: Settings, stop: asyncio.Event) -> None:
        from console.app import create_app

        await _serve_http(create_app(settings), settings.console_bind, stop, settings)

    async def webhooks(settings: Settings, stop: asyncio.Event) -> None:
        from console.webhook_app import create_app

        await _serve_http(create_app(settings), settings.webhooks_bind, stop, settings)

    async def demo_life(settings: Settings, stop: asyncio.Event) -> None:
        from simulators import demo_life as life

        await life.run(settings.mqtt_url, stop, sos_after_s=settings.demo_sos_after_s)

    async def store(settings: Settings, stop: asyncio.Event) -> None:
        from devices.readings import writer
        from foundation import deadletter_archive

        async with asyncio.TaskGroup() as tg:  # readings, and the dead letters kept for good
            tg.create_task(writer.run(settings, stop))
            tg.create_task(deadletter_archive.run(settings, stop))

    return {
        "store": store, "ingest": ingest, "detectors": detectors, "dispatcher": dispatcher,
        "console": console, "webhooks": webhooks, "demo-life": demo_life,
    }


# What a warm spare of each service imports before it is told to run (the imports are most
# of a cold start); every service also imports these.
_COMMON = ("foundation.observability", "uvicorn")
_MODULES = {
    "ingest": ("ingest.service",),
    "detectors": ("detectors.service",),
    "dispatcher": ("dispatcher.service", "dispatcher.channels", "dispatcher.steps"),
    "store": ("devices.readings.writer", "foundation.deadletter_archive"),
    "console": ("console.app",),
    "webhooks": ("console.webhook_app",),
    "demo-life": ("simulators.demo_life",),
}


async def _serve_http(app: Any, bind: str, stop: asyncio.Event, settings: Settings) -> None:
    """Serve an ASGI app on `bind` (host:port) until `stop` is set; over HTTPS when the
    settings name a certificate and key (`tls_cert_file`, `tls_key_file`). X-Forwarded-For/
    -Proto are believed only from `console_trusted_proxies` (ELDERCARE_CONSOLE_TRUSTED_PROXIES);
    uvicorn's own default would trust 127.0.0.1 (or FORWARDED_ALLOW_IPS), so anything on the
    host could forge its address and dodge the login throttle."""
    import uvicorn

    from foundation.http_server import Server

    host, port = bind.rsplit(":", 1)
    trusted_proxies = settings.console_trusted_proxies.strip()
    server = Server(uvicorn.Config(
        app, host=host, port=int(port), log_level="warning", timeout_graceful_shutdown=2,
        proxy_headers=bool(trusted_proxies), forwarded_allow_ips=trusted_proxies or None,
        ssl_certfile=settings.tls_cert_file or None, ssl_keyfile=settings.tls_key_file or None))
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.stop()
    await serving


SERVICES = ("ingest", "detectors", "dispatcher", "console", "store")


async def with_endpoint(name: str, settings: Settings, stop: asyncio.Event) -> None:
    """Run the named service until `stop`, beside its /metrics, /healthz and /readyz endpoint
    (when `metrics_binds` names it): a service process as `eldercare up` runs it."""
    from foundation import observability

    async with observability.running(settings, name):
        await _registry()[name](settings, stop)


def run_service(name: str, settings: Settings) -> None:
    """Run the named service until a signal asks it to stop."""
    logs.configure(settings.log_level, name)
    log = logs.get(__name__)
    log.info("service starting")  # with the stop's timing: what a restart costs
    asked: list[float] = []

    def ask_to_stop() -> None:
        if not asked:
            asked.append(time.monotonic())
            log.info("service stopping")
        stop.set()

    stop = asyncio.Event()

    async def supervised() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, ask_to_stop)
        await with_endpoint(name, settings, stop)

    asyncio.run(supervised())
    if asked:
        log.info("service stopped", stop_took_s=round(time.monotonic() - asked[0], 2))


def main(argv: list[str]) -> int:
    """`python -m eldercare.services NAME [--standby]`: what the supervisor starts. Lighter than
    the `eldercare` CLI, whose other commands import much more. With --standby the process
    imports its service, then waits for a line on stdin ("go", or "go" and the settings as
    JSON) before it runs it: a warm spare the supervisor starts in place of a dead process,
    or a service started before the brokers it needs (EOF: exit without running)."""
    import sys

    from foundation.config import get_settings

    name, standby = argv[0], "--standby" in argv[1:]
    if standby:
        _warm(name)
        line = sys.stdin.readline()
        if not line:
            return 0
        _take_settings(line)
    run_service(name, get_settings())
    return 0


def _take_settings(line: str) -> None:
    """ "go" may carry the settings as JSON (ELDERCARE_ variables): a process started before
    the embedded brokers and database, whose addresses it learns now."""
    import json
    import os

    _, _, carried = line.strip().partition(" ")
    if carried:
        os.environ.update({str(k): str(v) for k, v in json.loads(carried).items()})


def _warm(name: str) -> None:
    """Import what service `name` imports once it runs."""
    import importlib

    for module in (*_COMMON, *_MODULES.get(name, ())):
        importlib.import_module(module)


def _exit(code: int) -> None:
    """Exit without the interpreter's teardown: once the service has stopped, everything that
    matters is closed, flushed or committed, and tearing down a service's modules and objects
    took 0.2-0.8 s of a loaded machine's CPU per process, which a restart of the stack paid
    three times in a row (services stop one stage after another)."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    import sys

    _exit(main(sys.argv[1:]))
