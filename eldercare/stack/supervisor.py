"""`eldercare up`: embedded services for every unset URL, migrations, topics, then ingest,
detectors, dispatcher and console as supervised child processes. Ctrl-C stops them all, the
services first (they finish in-flight work), the embedded brokers and database last."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from rich.console import Console

from eldercare import db, kafka, logs
from eldercare.config import Settings, child_env
from eldercare.masking import mask_url
from eldercare.services import SERVICES
from eldercare.stack import embedded, procs, state

log = logs.get(__name__)
out = Console(stderr=True)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)


class Stack:
    """The embedded services this run started, and the settings that point at them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: list[embedded.EmbeddedService] = []

    def start_embedded(self) -> Settings:
        s = self.settings
        data_dir = s.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        changes: dict[str, object] = {}
        if not s.database_url:
            svc = embedded.start_postgres(data_dir)
            self.embedded.append(svc)
            changes["database_url"] = svc.url
        if not s.kafka_bootstrap:
            svc = embedded.start_kafka(data_dir)
            self.embedded.append(svc)
            changes["kafka_bootstrap"] = svc.url
        if not s.mqtt_url:
            svc = embedded.start_mqtt(data_dir, broker=s.embedded_mqtt)
            self.embedded.append(svc)
            changes["mqtt_url"] = svc.url
            changes["mqtt_auth_dir"] = svc.extra.get("auth_dir", "")
            changes["mqtt_device_url"] = svc.extra.get("device_url", "")
            if svc.extra.get("broker") == "amqtt":  # MQTT 3.1.1 only: no shared subscriptions
                changes["mqtt_shared_group"] = ""
                changes["mqtt_protocol"] = "3.1.1"
        self.settings = s.model_copy(update=changes)
        return self.settings

    def prepare(self) -> None:
        db.upgrade(self.settings.database_url)
        from devices import provisioning  # devices provisioned before this start may log in

        provisioning.publish(self.settings.database_url, self.settings.mqtt_auth_dir)
        asyncio.run(kafka.ensure_topics(self.settings))

    def stop(self) -> None:
        for svc in reversed(self.embedded):
            svc.stop()
        self.embedded.clear()


def spawn_service(name: str, settings: Settings) -> subprocess.Popen[bytes]:
    log_path = settings.data_dir.resolve() / f"{name}.log"
    cmd = [sys.executable, "-m", "eldercare.cli", "service", name]
    return procs.spawn(cmd, log_path, env=child_env(settings))


def supervise(settings: Settings, names: list[str], on_ready: str = "") -> int:
    """Run the named services until SIGINT/SIGTERM; restart any that crash, with backoff."""
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        signal.signal(sig, _stop)
    children = {n: Child(n, spawn_service(n, settings)) for n in names}
    try:
        _say(on_ready)
        while not stopping:
            for child in children.values():
                code = child.proc.poll()
                if code is None:
                    continue
                backoff = min(30.0, 2.0 ** child.restarts)
                if time.monotonic() - child.started < backoff:
                    continue
                log.warning("service exited; restarting", service=child.name, code=code)
                child.restarts += 1
                child.proc = spawn_service(child.name, settings)
                child.started = time.monotonic()
            time.sleep(0.2)
    finally:  # whatever happened (even a closed terminal), stop the services in order
        _say("[bold]Stopping…[/bold]")
        for child in children.values():  # SIGTERM to all: each finishes its in-flight work
            if child.proc.poll() is None:
                child.proc.terminate()
        for child in children.values():
            procs.stop(child.proc, timeout=15)
    return 0


def _say(text: str) -> None:
    """Print to the terminal; a closed pipe (`| tee` killed by Ctrl-C) must not stop shutdown."""
    if text:
        with contextlib.suppress(OSError):
            out.print(text)


def up(settings: Settings, demo: bool = False) -> int:
    stack = Stack(settings)
    try:
        settings = stack.start_embedded()
        stack.prepare()
        state.write(settings, {s.name: s.proc.pid for s in stack.embedded if s.proc})
        names = list(SERVICES)
        if demo:
            from devices.demo import demo_population
            from devices.registry import save

            save(settings.database_url, demo_population())
            names.append("demo-life")
        url = f"http://{settings.console_host}:{settings.console_port}/"
        channel = "Twilio" if not settings.dry_run else \
            "[bold yellow]DRY-RUN (ELDERCARE_NOTIFY=dry-run: nothing is really sent)[/bold yellow]"
        banner = (
            f"\n[bold green]eldercare is up.[/bold green] Console: [bold]{url}[/bold]\n"
            f"  Kafka {settings.kafka_bootstrap} · MQTT {mask_url(settings.mqtt_url)}"
            f" (devices {settings.device_broker_url}) · "
            f"PostgreSQL {mask_url(settings.database_url)}\n  Notifications: {channel}\n"
            f"  Logs: {settings.data_dir.resolve()}/*.log   Stop: Ctrl-C\n"
        )
        if demo:
            banner += (f"  Demo: 20 elders in 2 communities; an SOS is pressed in "
                       f"{settings.demo_sos_after_s:.0f} s.\n")
            from dispatcher.console.accounts import DEMO_PASSWORD, ensure_demo_accounts

            logins = ", ".join(a.username for a in ensure_demo_accounts(settings.database_url))
            banner += (f"  Console login: [bold]admin[/bold] / [bold]{DEMO_PASSWORD}[/bold] "
                       f"(also {logins.removeprefix('admin, ')}; same password)\n")
        return supervise(settings, names, banner)
    finally:
        state.remove(settings.data_dir)
        stack.stop()
