"""`eldercare up`: embedded services for every unset URL, migrations, topics, then ingest,
detectors, dispatcher and console as supervised child processes. Ctrl-C stops them all, the
services first (they finish in-flight work), the embedded brokers and database last."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType

from rich.console import Console

from eldercare.services import SERVICES
from eldercare.stack import embedded, evict, roll
from foundation import db, kafka, logs, procs
from foundation import stack_state as state
from foundation.config import Settings, child_env
from foundation.masking import mask_url

log = logs.get(__name__)
out = Console(stderr=True)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    exited: float | None = None  # when the supervisor first saw it gone

    def died_at(self, now: float) -> float:
        if self.exited is None:
            self.exited = now
        return self.exited


class Stack:
    """The embedded services this run started, and the settings that point at them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: list[embedded.EmbeddedService] = []

    def start_embedded(self) -> Settings:
        """Start an embedded PostgreSQL, Kafka and MQTT broker for each unset URL. They do
        not depend on one another: PostgreSQL (the slow one: 0.2-25 s on a busy machine)
        starts in a thread while the brokers start here (they must be spawned from this
        thread: a child gets its parent-death signal when the thread that started it ends;
        pg_ctl's server is detached)."""
        s = self.settings
        data_dir = s.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        changes: dict[str, object] = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres") as pool:
            postgres = pool.submit(embedded.start_postgres, data_dir) \
                if not s.database_url else None
            try:
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
                    if svc.extra.get("broker") == "amqtt":  # MQTT 3.1.1 only: no shared subs
                        changes["mqtt_shared_group"] = ""
                        changes["mqtt_protocol"] = "3.1.1"
            finally:
                if postgres is not None:  # also when a broker failed: stopped with the rest
                    svc = postgres.result()
                    self.embedded.insert(0, svc)  # stopped last
                    changes["database_url"] = svc.url
        self.settings = s.model_copy(update=changes)
        if self._embedded_mosquitto():
            from ingest.broker_session import rearm_now

            rearm_now(self.settings)  # before any device's press: see ingest.broker_session
        return self.settings

    def _embedded_mosquitto(self) -> bool:
        """Whether this run started mosquitto (persistent sessions; amqtt keeps none)."""
        return any(s.name == "mqtt" and s.extra.get("broker") == "mosquitto"
                   for s in self.embedded)

    def prepare(self) -> None:
        db.upgrade(self.settings.database_url)
        from devices import provisioning  # devices provisioned before this start may log in

        provisioning.publish(self.settings.database_url, self.settings.mqtt_auth_dir)
        asyncio.run(kafka.ensure_topics(self.settings))

    def stop(self) -> None:
        """Stop the brokers and the database, all at once (nothing depends on another now:
        the services have stopped)."""
        postgres = [svc for svc in self.embedded if svc.handle is not None]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres") as pool:
            stopping = [pool.submit(svc.stop) for svc in postgres]  # pg_ctl waits ~1 s
            for svc in reversed(self.embedded):
                if svc not in postgres:
                    svc.stop()
            for done in stopping:
                done.result()
        self.embedded.clear()


def spawn_service(name: str, settings: Settings, standby: bool = False
                  ) -> subprocess.Popen[bytes]:
    """Start a service process; a `standby` one imports its code and waits for "go"."""
    log_path = settings.data_dir.resolve() / f"{name}.log"
    cmd = [sys.executable, "-m", "eldercare.services", name] + (["--standby"] if standby else [])
    return procs.spawn(cmd, log_path, env=child_env(settings),
                       stdin=subprocess.PIPE if standby else subprocess.DEVNULL)


def _activate(standby: subprocess.Popen[bytes], settings: Settings | None = None) -> bool:
    """Tell a standby process to run its service (with `settings`, if it was started before
    they were known); False if it is gone."""
    if standby.poll() is not None or standby.stdin is None:
        return False
    line = b"go\n" if settings is None else \
        b"go " + json.dumps(settings_env(settings)).encode() + b"\n"
    try:
        standby.stdin.write(line)
        standby.stdin.flush()
    except OSError:
        return False
    return True


def settings_env(settings: Settings) -> dict[str, str]:
    """The ELDERCARE_ variables that carry `settings` to a child."""
    return {k: v for k, v in child_env(settings).items() if k.startswith("ELDERCARE_")}


class EarlyServices:
    """The SOS path's service processes started before the embedded brokers and database: each
    imports its code (1-2 s of a whole-stack start on a busy 2-core machine) while PostgreSQL,
    tansu and mosquitto start, then waits, like a warm spare, for "go" with the settings that
    point at them (`Supervisor.start`)."""

    def __init__(self, settings: Settings, names: list[str]) -> None:
        settings.data_dir.resolve().mkdir(parents=True, exist_ok=True)  # their logs
        self.procs = {n: spawn_service(n, settings, standby=True) for n in names
                      if n in SOS_PATH}  # the others start later (Supervisor.start)

    def run(self, name: str, settings: Settings) -> subprocess.Popen[bytes] | None:
        """The early process of `name`, told to run with `settings`; None if there is none
        (or it died: then the caller starts one)."""
        proc = self.procs.pop(name, None)
        return proc if proc is not None and _activate(proc, settings) else None

    def close(self) -> None:
        """Those not taken exit (EOF on stdin: a standby exits without running)."""
        for proc in self.procs.values():
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for proc in self.procs.values():
            procs.stop(proc, timeout=5)
        self.procs.clear()


# Services with a warm spare: a killed one is replaced without a cold start (imports alone take
# 1-3 s on a busy 2-core machine). The console and the demo are not worth the memory.
STANDBY = frozenset({"ingest", "detectors", "dispatcher", "store"})
# The spares are started this long after the services: a start of the whole stack spawns 4-8
# Python processes at once on a 2-core machine, and the services' own imports waited for the
# spares' (3.0 s to the first service's log instead of ~1.5 s).
STANDBY_AFTER_S = 6.0
# An SOS goes through these; the other services (store, console, demo) start LATER_AFTER_S
# after them, so that a start of the stack gives its CPU to the path of a call first (a backlog
# of presses made while the stack was down waits for it).
SOS_PATH = frozenset({"ingest", "detectors", "dispatcher"})
LATER_AFTER_S = 3.0
RESTART_BACKOFF_MAX_S = 5.0  # a crash-looping service is retried at least this often
HEALTHY_AFTER_S = 30.0  # a service that ran this long before exiting starts again at once
# Stopped in this order (the rest last): producers before their consumers.
STOP_ORDER = (("ingest", "demo-life"), ("detectors",), ("dispatcher",))


class Supervisor:
    """Keeps the named services and the embedded brokers and database running: a service that
    exits is started again (at once the first time, then with a short backoff), a broker or
    database that died is started again on the same address with the same data."""

    def __init__(self, settings: Settings, names: list[str], stack: Stack | None = None,
                 early: EarlyServices | None = None) -> None:
        self.settings = settings
        self.early = early
        self.names = names
        self.stack = stack
        self.children: dict[str, Child] = {}
        self.standby: dict[str, subprocess.Popen[bytes]] = {}
        self._spares_due: float | None = None  # when to start the spares (see STANDBY_AFTER_S)
        self._later_due: float | None = None  # ... and the services off the SOS path
        self._infra_retry_at: dict[str, float] = {}
        self.infra_restarts: dict[str, int] = {}  # embedded service name -> times restarted
        kafka_svc = next((s for s in stack.embedded if s.name == "kafka"), None) if stack else None
        # Only the embedded broker is rolled: a real Kafka has retention.
        self.roller = roll.Roller(settings, names, self._pid, lambda: self._replace(kafka_svc)) \
            if kafka_svc is not None else None

    def _pid(self, name: str) -> int | None:
        child = self.children.get(name)
        return child.proc.pid if child is not None and child.proc.poll() is None else None

    def _replace(self, svc: embedded.EmbeddedService | None) -> None:
        """A fresh embedded Kafka on the same port, with the platform's topics."""
        assert svc is not None and svc.proc is not None
        svc.proc.kill()  # nothing in it is still needed: every consumer has caught up
        svc.proc.wait()
        svc.restart()
        asyncio.run(kafka.ensure_topics(self.settings))

    def start(self) -> None:
        """The services on the SOS path now, the others LATER_AFTER_S later (`check`)."""
        first = [n for n in self.names if n in SOS_PATH] or self.names
        self.children = {n: Child(n, self._first(n)) for n in first}
        if self.early is not None:
            self.early.close()
        now = time.monotonic()
        self._spares_due = now + STANDBY_AFTER_S
        self._later_due = now + LATER_AFTER_S if len(first) < len(self.names) else None

    def _start_later(self) -> None:
        self._later_due = None
        for name in self.names:
            if name not in self.children:
                self.children[name] = Child(name, spawn_service(name, self.settings))

    def _first(self, name: str) -> subprocess.Popen[bytes]:
        early = self.early.run(name, self.settings) if self.early is not None else None
        return early or spawn_service(name, self.settings)

    def _start_spares(self) -> None:
        """A warm spare for every service that has none (a replacement took it meanwhile)."""
        self._spares_due = None
        for name in sorted(STANDBY.intersection(self.names) - set(self.standby)):
            self.standby[name] = spawn_service(name, self.settings, standby=True)

    def _replacement(self, name: str) -> subprocess.Popen[bytes]:
        """The warm spare if there is one (and a new spare behind it), else a cold start."""
        spare = self.standby.pop(name, None)
        if name in STANDBY and self._spares_due is None:  # else the spares are still to come
            self.standby[name] = spawn_service(name, self.settings, standby=True)
        if spare is not None and _activate(spare):
            return spare
        return spawn_service(name, self.settings)

    def check(self) -> None:
        """One round: infrastructure first (services need it), then the services."""
        for svc in self.stack.embedded if self.stack else []:
            if not svc.alive():
                self._restart_infra(svc)
        now = time.monotonic()
        if self._later_due is not None and now >= self._later_due:
            self._start_later()
        if self._spares_due is not None and now >= self._spares_due:
            self._start_spares()
        for child in self.children.values():
            code = child.proc.poll()
            if code is None:
                continue
            if now - child.started >= HEALTHY_AFTER_S:
                child.restarts = 0
            backoff = 0.0 if child.restarts == 0 else \
                min(RESTART_BACKOFF_MAX_S, 0.5 * 2.0 ** child.restarts)
            if now - child.died_at(now) < backoff:
                continue
            log.warning("service exited; restarting", service=child.name, code=code,
                        restarts=child.restarts)
            child.restarts += 1
            if child.name in STANDBY:  # the Kafka consumers: hand their partitions over now,
                # and before the replacement joins: tansu 0.6 given a LeaveGroup while the
                # group rebalances for a new member was seen to stall the group for good
                evict.evict_now(self.settings, child.name, child.proc.pid)
            child.proc = self._replacement(child.name)
            child.started = time.monotonic()
            child.exited = None
        if self.roller is not None and self.roller.due():
            self.roller.check()

    def _restart_infra(self, svc: embedded.EmbeddedService) -> None:
        if time.monotonic() < self._infra_retry_at.get(svc.name, 0.0):
            return
        log.error("embedded service died; restarting", service=svc.name, url=svc.url)
        try:
            svc.restart()
            if svc.name == "kafka":  # a new, empty broker: the topics and a new incarnation
                asyncio.run(kafka.ensure_topics(self.settings))
            if svc.name == "mqtt" and svc.extra.get("broker") == "mosquitto":
                from ingest.broker_session import rearm_now

                rearm_now(self.settings)  # before ingest reconnects: see ingest.broker_session
        except Exception as exc:  # e.g. PostgreSQL's old backends still hold its memory
            log.warning("embedded service not restarted yet", service=svc.name, error=str(exc))
            self._infra_retry_at[svc.name] = time.monotonic() + 0.5
            return
        self.infra_restarts[svc.name] = self.infra_restarts.get(svc.name, 0) + 1
        log.info("embedded service restarted", service=svc.name)

    def stop(self) -> None:
        """SIGTERM to the services stage by stage (each finishes its in-flight work and drains
        its topic), then the standbys."""
        for spare in self.standby.values():  # EOF on stdin: a spare exits without running
            if spare.stdin is not None:
                with contextlib.suppress(OSError):
                    spare.stdin.close()
        # In the direction of the data: each stage drains what the one before handed over.
        stages = [[c for c in self.children.values() if c.name in stage] for stage in STOP_ORDER]
        stages.append([c for c in self.children.values() if not any(
            c.name in stage for stage in STOP_ORDER)])
        for stage in stages:
            for child in stage:
                if child.proc.poll() is None:
                    child.proc.terminate()
            for child in stage:
                procs.stop(child.proc, timeout=15)
        for spare in self.standby.values():
            procs.stop(spare, timeout=5)
        self.standby.clear()
        if self.roller is not None:
            self.roller.close()


def supervise(settings: Settings, names: list[str], on_ready: str = "",
              stack: Stack | None = None, early: EarlyServices | None = None) -> int:
    """Run the named services until SIGINT/SIGTERM (those of `early` already started);
    restart any that crash, and the embedded brokers and database of `stack` if they die."""
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        signal.signal(sig, _stop)
    supervisor = Supervisor(settings, names, stack, early)
    supervisor.start()
    try:
        _say(on_ready)
        while not stopping:
            supervisor.check()
            time.sleep(0.1)
    finally:  # whatever happened (even a closed terminal), stop the services in order
        _say("[bold]Stopping…[/bold]")
        supervisor.stop()
    return 0


def _say(text: str) -> None:
    """Print to the terminal; a closed pipe (`| tee` killed by Ctrl-C) must not stop shutdown."""
    if text:
        with contextlib.suppress(OSError):
            out.print(text)


def up(settings: Settings, demo: bool = False) -> int:
    stack = Stack(settings)
    names = list(SERVICES) + (["demo-life"] if demo else [])
    early = EarlyServices(settings, names)  # importing while the brokers and database start
    try:
        settings = stack.start_embedded()
        stack.prepare()
        state.write(settings, {s.name: s.proc.pid for s in stack.embedded if s.proc})
        if demo:
            from devices.demo import demo_population
            from devices.registry import save

            save(settings.database_url, demo_population())
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
            from console.accounts import DEMO_PASSWORD, ensure_demo_accounts

            logins = ", ".join(a.username for a in ensure_demo_accounts(settings.database_url))
            banner += (f"  Console login: [bold]admin[/bold] / [bold]{DEMO_PASSWORD}[/bold] "
                       f"(also {logins.removeprefix('admin, ')}; same password)\n")
        return supervise(settings, names, banner, stack, early)
    finally:
        early.close()  # those not taken: a start that failed
        state.remove(settings.data_dir)
        stack.stop()
