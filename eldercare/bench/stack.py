"""The platform as the benches run it: embedded PostgreSQL, tansu and mosquitto, the Prism mock
of Twilio behind the tests' recording proxy, and the services as child processes started the
way `eldercare up` starts them (`python -m eldercare.services NAME`)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eldercare.stack import embedded
from foundation import db, kafka, observability, procs
from foundation.config import Settings, child_env

REPO = Path(__file__).resolve().parents[2]


@dataclass
class BenchStack:
    """What `running` started: settings pointing at it, the processes, the Twilio mock."""

    settings: Settings
    data: Path
    infra: list[embedded.EmbeddedService]
    mock: Any  # tests.twilio_mock.TwilioMock
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        """Process ids by name: the embedded servers and every service process."""
        found = {svc.name: svc.pid for svc in self.infra if svc.pid}
        found.update({name: p.pid for name, p in self.services.items()})
        return {k: v for k, v in found.items() if v}


def _settings(data: Path, infra: list[embedded.EmbeddedService], mock_url: str,
              **overrides: Any) -> Settings:
    pg, kf, mq = infra
    return Settings(
        database_url=pg.url, kafka_bootstrap=kf.url, mqtt_url=mq.url, data_dir=data,
        mqtt_auth_dir=mq.extra.get("auth_dir", ""),
        mqtt_device_url=mq.extra.get("device_url", ""),
        # Each service's /metrics endpoint, as `eldercare up` runs them (on free ports): the
        # idle bench counts what they cost (an endpoint and a lag report per service).
        metrics_binds=observability.local_binds(),
        console_bind=f"127.0.0.1:{procs.free_port()}",
        ingest_http_bind=f"127.0.0.1:{procs.free_port()}",
        notify="twilio", twilio_account_sid="AC" + "0123456789abcdef" * 2,
        twilio_auth_token="bench-token", twilio_from_number="+15017122661",
        twilio_api_base_url=mock_url, log_level="WARNING", **overrides,
    )


@dataclass
class Infra:
    """What `database_and_kafka` started."""

    settings: Settings
    postgres: embedded.EmbeddedService
    kafka: embedded.EmbeddedService


@contextlib.contextmanager
def database_and_kafka(prefix: str) -> Iterator[Infra]:
    """An embedded PostgreSQL (migrated) and tansu in a temporary folder, for the benches that
    run one part of the platform in their own process; both stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        data = Path(tmp)
        started: list[embedded.EmbeddedService] = []
        try:
            started += [embedded.start_postgres(data), embedded.start_kafka(data)]
            pg, kf = started
            db.upgrade(pg.url)
            yield Infra(Settings(database_url=pg.url, kafka_bootstrap=kf.url, data_dir=data),
                        pg, kf)
        finally:
            for svc in reversed(started):
                svc.stop()


@contextlib.contextmanager
def running(data: Path, **overrides: Any) -> Iterator[BenchStack]:
    """Start the embedded servers and the Twilio mock, migrate, create the topics; services
    are started with `start_services` once the population is saved. Stops all on exit."""
    sys.path.insert(0, str(REPO))  # the tests' Twilio mock is reused as is
    from tests import twilio_mock

    infra: list[embedded.EmbeddedService] = []
    stack: BenchStack | None = None
    prism = server = None
    try:
        infra += [embedded.start_postgres(data), embedded.start_kafka(data),
                  embedded.start_mqtt(data)]
        mock, prism, server = twilio_mock.start(data)
        mock.replay = True  # Prism's first answer per request kind, then no Prism queue
        settings = _settings(data, infra, mock.url, **overrides)
        db.upgrade(settings.database_url)
        asyncio.run(kafka.ensure_topics(settings))
        stack = BenchStack(settings, data, infra, mock)
        yield stack
    finally:
        if stack is not None:
            for child in stack.services.values():
                procs.stop(child)
        if server is not None:
            server.should_exit = True
        if prism is not None:
            procs.stop(prism)
        for svc in reversed(infra):
            svc.stop()


def code_env(settings: Settings, code: Path | None = None) -> dict[str, str]:
    """A service's environment; with `code`, its imports come from that source tree (`python
    -m` puts the working directory first on the path, so the child also runs in `code`)."""
    env = child_env(settings)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    return env


def imported_from(settings: Settings, code: Path | None = None) -> str:
    """Where a service started by `start_services(..., code)` imports the services from."""
    found = subprocess.run(
        [sys.executable, "-c", "import eldercare.services as m; print(m.__file__)"],
        env=code_env(settings, code), cwd=code, capture_output=True, text=True, check=True)
    return found.stdout.strip()


def start_services(stack: BenchStack, names: tuple[str, ...], code: Path | None = None) -> None:
    """Start each named service as `eldercare up` does (`ingest@2` starts ingest worker 2);
    with `code`, from the source tree there instead of this one."""
    for name in names:
        service, _, worker = name.partition("@")
        settings = stack.settings
        if worker:
            settings = settings.model_copy(update={"ingest_worker": int(worker)})
        stack.services[name] = procs.spawn(
            [sys.executable, "-m", "eldercare.services", service],
            stack.data / f"{name.replace('@', '-')}.log", env=code_env(settings, code),
            cwd=code)
