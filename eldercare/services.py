"""Running one service in this process until SIGINT/SIGTERM, then shutting down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from foundation import logs
from foundation.config import Settings

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]


def _registry() -> dict[str, ServiceMain]:
    # Imported lazily: each service process loads only what it runs.
    from detectors import engine
    from dispatcher import service as dispatcher
    from ingest import service as ingest_service

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
        "store": store,
        "ingest": ingest_service.run, "detectors": engine.run, "dispatcher": dispatcher.run,
        "console": console, "webhooks": webhooks, "demo-life": demo_life,
    }


async def _serve_http(app: Any, bind: str, stop: asyncio.Event, settings: Settings) -> None:
    """Serve an ASGI app on `bind` (host:port) until `stop` is set; over HTTPS when the
    settings name a certificate and key (`tls_cert_file`, `tls_key_file`). X-Forwarded-For/
    -Proto are believed only from `console_trusted_proxies` (ELDERCARE_CONSOLE_TRUSTED_PROXIES);
    uvicorn's own default would trust 127.0.0.1 (or FORWARDED_ALLOW_IPS), so anything on the
    host could forge its address and dodge the login throttle."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the service runner owns signals
            yield

    host, port = bind.rsplit(":", 1)
    trusted_proxies = settings.console_trusted_proxies.strip()
    server = Server(uvicorn.Config(
        app, host=host, port=int(port), log_level="warning", timeout_graceful_shutdown=2,
        proxy_headers=bool(trusted_proxies), forwarded_allow_ips=trusted_proxies or None,
        ssl_certfile=settings.tls_cert_file or None, ssl_keyfile=settings.tls_key_file or None))
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


SERVICES = ("ingest", "detectors", "dispatcher", "console", "store")


def run_service(name: str, settings: Settings) -> None:
    """Run the named service until a signal asks it to stop."""
    logs.configure(settings.log_level, name)
    main = _registry()[name]

    async def supervised() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        from foundation import observability  # /metrics, /healthz, /readyz of this process

        async with observability.running(settings, name):
            await main(settings, stop)

    asyncio.run(supervised())


def main(argv: list[str]) -> int:
    """`python -m eldercare.services NAME [--standby]`: what the supervisor starts. Lighter than
    the `eldercare` CLI, whose other commands import much more. With --standby the process
    imports its service, then waits for a line on stdin before it runs it: a warm spare the
    supervisor starts in place of a dead process (EOF: exit without running)."""
    import sys

    from foundation.config import get_settings

    name, standby = argv[0], "--standby" in argv[1:]
    if standby:
        _registry()  # the imports are most of a cold start
        _warm()
        if not sys.stdin.readline():
            return 0
    run_service(name, get_settings())
    return 0


def _warm() -> None:
    """Import what the services import only once they run (`_registry` imports the rest)."""
    import importlib

    for module in ("foundation.observability", "uvicorn", "devices.readings.writer",
                   "dispatcher.channels", "dispatcher.steps"):
        importlib.import_module(module)


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
