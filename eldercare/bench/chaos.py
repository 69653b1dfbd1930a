"""`eldercare bench chaos`: an SOS flood while one part of the stack is killed with SIGKILL.

The stack is the one `eldercare up` runs: embedded PostgreSQL, tansu and mosquitto and the
ingest, detectors, dispatcher and store services under the real `Supervisor`, which restarts
whatever dies. Twilio is the Prism mock behind the tests' recording proxy. Per case, 50 elders
press their SOS button (5 presses/s) and 2 s into the flood the case's process is killed (or the
whole stack is stopped and started again on the same data directory, as Ctrl-C and `eldercare up`
do). A press is published like a device does: QoS 1, retried until the broker acknowledges it.

Per case: presses, incidents opened, elders whose first contact was called, lost presses (no
call within `TIMEOUT_S`), duplicated (more than one incident or more than one call to the first
contact) and the worst and median press -> first call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import psycopg

from devices.catalogue import DeviceKind
from devices.registry import Community, Contact, Device, Elder, save
from eldercare.stack.supervisor import EarlyServices, Stack, Supervisor
from foundation import procs
from foundation.config import Settings
from foundation.mqtt import MqttTarget, topic_for

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["ingest", "detectors", "dispatcher", "store"]
CASES = ("detectors", "dispatcher", "ingest", "store", "mosquitto", "postgres", "kafka",
         "restart")
# Rows of the `restart` case's presses, by when they were made (see `run_restart`).
RESTART_DURING, RESTART_AFTER = "restart: pressed while restarting", "restart: pressed once up"
PRESSES = 50
PRESS_INTERVAL_S = 0.2  # 50 presses in 10 s
KILL_AFTER_PRESSES = 10
OPERATOR_PHONE = "+8613600000000"
TIMEOUT_S = 60.0  # a press with no call after this long counts as lost
PUBACK_WAIT_S = 1.0  # mosquitto acknowledges within milliseconds, even with ingest away


def _say(msg: str) -> None:
    print(f"[bench chaos] {msg}", file=sys.stderr, flush=True)


@dataclass
class CaseResult:
    """One case's row of the table."""

    case: str
    presses: int
    incidents: int
    first_calls: int
    lost: int
    duplicated: int
    max_s: float | None  # press -> the call request at the Twilio mock
    p50_s: float | None
    # press -> the incident in the database (ingest, detectors, dispatcher's intake): the
    # pipeline's own time, whatever the Twilio mock does
    incident_max_s: float | None = None
    incident_p50_s: float | None = None
    # press -> the call's row in the database (a step worker starts the call): includes waiting
    # for a free worker, i.e. for the Twilio mock's earlier answers
    pipeline_max_s: float | None = None
    pipeline_p50_s: float | None = None


def population(elders: int) -> tuple[Community, dict[str, str]]:
    """One community of `elders` elders, each with an SOS button and one contact (no duty
    staff: the first request of the critical ladder is the call to contact 1)."""
    cid = f"chaos-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().int % 10_000  # numbers of their own on a Twilio mock shared with others
    people = [Elder(f"{cid}-E{n:04d}", cid, f"演练老人{n:04d}", f"演练路{n}号",
                    contacts=[Contact(1, f"联系人{n:04d}", "女儿", f"+86136{tag:04d}{n:04d}")],
                    devices=[Device(f"{cid}-E{n:04d}-sos", DeviceKind.SOS_BUTTON, "卧室")])
              for n in range(elders)]
    community = Community(cid, "演练社区", "演练区", "演练街道", "", people, [])
    return community, {e.id: e.contacts[0].phone for e in people}


class ChaosStack:
    """`eldercare up` in this process: embedded services and the supervisor, driven by one
    long-lived thread. Every child is started from that thread (or the main thread): Linux
    sends a child its parent-death signal when the *thread* that started it ends."""

    def __init__(self, base: Settings, data_dir: Path, services: list[str] | None = None
                 ) -> None:
        self.base = base.model_copy(update={"data_dir": data_dir})
        self.services = services or SERVICES
        self.stack = Stack(self.base)
        self.settings = self.base
        self.supervisor: Supervisor | None = None
        self._stop = threading.Event()
        self._restart = threading.Event()
        self._restarted = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_restart: tuple[float, float] | None = None
        self.last_stop_s = 0.0  # of the last restart: the stop's share

    def start(self) -> Settings:
        self._start_stack()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self.settings

    def _start_stack(self) -> None:
        """What `eldercare up` does (`eldercare.stack.supervisor.up`)."""
        self.stack = Stack(self.base)
        early = EarlyServices(self.base, self.services)
        try:
            self.settings = self.stack.start_embedded()
            self.stack.prepare()
            self.supervisor = Supervisor(self.settings, self.services, self.stack, early)
            self.supervisor.start()
        finally:
            early.close()

    def _stop_stack(self) -> None:
        """What Ctrl-C does: services first, then the brokers and the database."""
        if self.supervisor is not None:
            self.supervisor.stop()
        self.stack.stop()

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self._restart.is_set():
                began = time.perf_counter()
                self._stop_stack()
                self.last_stop_s = time.perf_counter() - began
                self._start_stack()
                self._restart.clear()
                self._restarted.set()
            assert self.supervisor is not None
            self.supervisor.check()
            self._stop.wait(0.1)

    def restart(self) -> None:
        """Ctrl-C and `eldercare up` again on the same data directory; returns when up (when
        `eldercare up` prints its banner: every process started). `last_restart` is then
        (asked, up) in perf_counter seconds."""
        asked = time.perf_counter()
        self._restarted.clear()
        self._restart.set()
        self._restarted.wait()
        self.last_restart = (asked, time.perf_counter())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._stop_stack()

    def pid(self, name: str) -> int:
        """The process id of a service or of an embedded broker or database."""
        if self.supervisor is not None and name in self.supervisor.children:
            return self.supervisor.children[name].proc.pid
        infra = {"mosquitto": "mqtt", "postgres": "postgres", "kafka": "kafka"}[name]
        svc = next(s for s in self.stack.embedded if s.name == infra)
        pid = svc.pid
        assert pid is not None, f"{name} is not running"
        return pid

    def kill(self, name: str) -> None:
        os.kill(self.pid(name), signal.SIGKILL)

    def kill_and_wait_back(self, name: str, timeout: float = 60.0) -> None:
        """SIGKILL an embedded broker or database and return once the supervisor has started
        it again (and done what it does after a restart)."""
        assert self.supervisor is not None
        infra = {"mosquitto": "mqtt", "postgres": "postgres", "kafka": "kafka"}[name]
        before = self.supervisor.infra_restarts.get(infra, 0)
        self.kill(name)
        deadline = time.monotonic() + timeout
        while self.supervisor.infra_restarts.get(infra, 0) == before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not restarted within {timeout:.0f} s")
            time.sleep(0.02)


async def _press(stack: ChaosStack, community_id: str, device_id: str, body: bytes) -> None:
    """Publish like a device: QoS 1, reconnecting and retrying until the broker acknowledges
    (the broker, or the whole stack, may be restarting). A press not acknowledged within
    PUBACK_WAIT_S is sent again, as a device does when its connection drops: aiomqtt leaves
    a pending publish waiting for its whole timeout then (a press in flight as mosquitto
    stopped waited 5 s before it was sent again; the platform recognises the repeat)."""
    try:  # on the device's alarm channel if it is an alarm, as a device publishes it
        kind = str(json.loads(body).get("type", ""))
    except (ValueError, AttributeError):
        kind = ""
    topic = topic_for(community_id, device_id, kind)
    while True:
        try:
            async with MqttTarget.parse(stack.settings.mqtt_url).client(timeout=5) as client:
                await client.publish(topic, body, qos=1,
                                     timeout=PUBACK_WAIT_S)
                return
        except (aiomqtt.MqttError, OSError, TimeoutError):
            await asyncio.sleep(0.2)


async def flood(stack: ChaosStack, community: Community, elders: list[Elder],
                disrupt: Callable[[], None] | None) -> dict[str, float]:
    """Press each elder's SOS, PRESS_INTERVAL_S apart; call `disrupt()` (in a thread) after
    KILL_AFTER_PRESSES presses. Returns elder id -> press time (perf_counter)."""
    pressed: dict[str, float] = {}
    presses: list[asyncio.Task[None]] = []
    disruption: asyncio.Future[None] | None = None
    for n, elder in enumerate(elders):
        if n == KILL_AFTER_PRESSES and disrupt is not None:
            disruption = asyncio.get_running_loop().run_in_executor(None, disrupt)
        body = json.dumps({"msg_id": f"sos-{uuid.uuid4().hex[:12]}", "ts": time.time(),
                           "type": "sos"}).encode()
        pressed[elder.id] = time.perf_counter()
        presses.append(asyncio.create_task(_press(stack, community.id, elder.devices[0].id,
                                                  body)))
        await asyncio.sleep(PRESS_INTERVAL_S)
    await asyncio.gather(*presses)
    if disruption is not None:
        await disruption
    return pressed


def tally(case: str, settings: Settings, requests: list[Any], phones: dict[str, str],
          pressed: dict[str, float]) -> CaseResult:
    """The case's row: calls at the Twilio mock, incidents in the database."""
    calls: dict[str, list[float]] = {}
    for r in list(requests):
        to = r.form.get("To", [""])[0]
        if r.path.endswith("/Calls.json"):
            calls.setdefault(to, []).append(r.arrived)
    wall = time.time() - time.perf_counter()  # perf_counter -> epoch seconds
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT elder_id, count(*), min(extract(epoch FROM opened_at))"
                            " FROM incidents WHERE elder_id = ANY(%s) GROUP BY elder_id",
                            (list(pressed),)).fetchall()
        started = conn.execute(
            "SELECT to_number, min(extract(epoch FROM created_at)) FROM notifications"
            " WHERE channel = 'voice' AND to_number = ANY(%s) GROUP BY to_number",
            ([phones[e] for e in pressed],)).fetchall()
    incidents = {str(e): int(n) for e, n, _ in rows}
    opened = {str(e): float(t) for e, _, t in rows}
    call_rows = {str(to): float(t) for to, t in started}
    delays, pipeline, recorded, lost, duplicated = [], [], [], 0, 0
    for elder_id, t0 in pressed.items():
        mine = [t for t in calls.get(phones[elder_id], []) if t >= t0]
        if not mine:
            lost += 1
        else:
            delays.append(min(mine) - t0)
        if elder_id in opened:
            recorded.append(opened[elder_id] - (t0 + wall))
        if phones[elder_id] in call_rows:
            pipeline.append(call_rows[phones[elder_id]] - (t0 + wall))
        if len(mine) > 1 or incidents.get(elder_id, 0) > 1:
            duplicated += 1
    return CaseResult(case, len(pressed), sum(incidents.values()), len(delays), lost,
                      duplicated, *_worst_and_median(delays), *_worst_and_median(recorded),
                      *_worst_and_median(pipeline))


def _worst_and_median(delays: list[float]) -> tuple[float | None, float | None]:
    if not delays:
        return None, None
    return round(max(delays), 2), round(float(np.median(delays)), 2)


async def _wait_for_calls(requests: list[Any], phones: dict[str, str],
                          pressed: dict[str, float], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    wanted = {phones[e] for e in pressed}
    while time.perf_counter() < deadline:
        called = {r.form.get("To", [""])[0] for r in list(requests)
                  if r.path.endswith("/Calls.json")}
        if wanted <= called:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(3.0)  # a duplicate call would come within the retry of one batch


def run_case(case: str, stack: ChaosStack, requests: list[Any], community: Community,
             phones: dict[str, str], elders: list[Elder]) -> CaseResult:
    """Flood `elders` while `case` is killed (or the stack restarted); the supervisor brings
    the killed process back. Returns the case's row."""

    def disrupt() -> None:
        if case == "restart":
            stack.restart()
        elif case != "none":
            stack.kill(case)
            _say(f"{case} killed at {datetime.now(UTC).isoformat()}")

    return _flood_and_tally(case, stack, requests, community, phones, elders, disrupt)[0]


def _flood_and_tally(case: str, stack: ChaosStack, requests: list[Any], community: Community,
                     phones: dict[str, str], elders: list[Elder],
                     disrupt: Callable[[], None]) -> tuple[CaseResult, dict[str, float]]:
    pressed = asyncio.run(flood(stack, community, elders, disrupt))
    asyncio.run(_wait_for_calls(requests, phones, pressed, TIMEOUT_S))
    return tally(case, stack.settings, requests, phones, pressed), pressed


def run_restart(stack: ChaosStack, requests: list[Any], community: Community,
                phones: dict[str, str], elders: list[Elder]) -> list[CaseResult]:
    """The `restart` case: its row, then one for the presses made while the stack restarted
    (from the stop until `eldercare up` has started every process, when it prints its
    banner) and one for those made after (the services may still be starting)."""
    row, pressed = _flood_and_tally("restart", stack, requests, community, phones, elders,
                                    stack.restart)
    assert stack.last_restart is not None
    asked, up = stack.last_restart
    during = {e: t for e, t in pressed.items() if asked <= t < up}
    after = {e: t for e, t in pressed.items() if t >= up}
    _say(f"  restart: stopped and started again in {up - asked:.2f} s (stopped in "
         f"{stack.last_stop_s:.2f} s)")
    return [row, tally(RESTART_DURING, stack.settings, requests, phones, during),
            tally(RESTART_AFTER, stack.settings, requests, phones, after)]


def press_after(case: str, stack: ChaosStack, requests: list[Any], community: Community,
                phones: dict[str, str], elders: list[Elder],
                disrupt: Callable[[], None]) -> CaseResult:
    """`disrupt()` first, then the presses at once: they reach a stack that is coming back
    (broker up, services still connecting). Returns the row, as `run_case` does."""
    disrupt()
    pressed = asyncio.run(flood(stack, community, elders, None))
    asyncio.run(_wait_for_calls(requests, phones, pressed, TIMEOUT_S))
    return tally(case, stack.settings, requests, phones, pressed)


async def warm_up(stack: ChaosStack, requests: list[Any], community: Community,
                  phones: dict[str, str], elder: Elder, timeout: float = 120.0) -> None:
    """Press one elder's SOS every 2 s until the call comes: every service has subscribed
    (a press before ingest's first subscription reaches nobody)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        body = json.dumps({"msg_id": f"warm-{uuid.uuid4().hex[:8]}", "ts": time.time(),
                           "type": "sos"}).encode()
        await _press(stack, community.id, elder.devices[0].id, body)
        for _ in range(20):
            if any(r.form.get("To") == [phones[elder.id]] for r in list(requests)):
                return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"no call within {timeout:.0f} s of the warm-up press")


def warmed_population(stack: ChaosStack, requests: list[Any], n: int
                      ) -> tuple[Community, dict[str, str]]:
    """`population(n)` saved in the stack's registry, the stack warmed up by a press of its
    last elder (the tests' chaos fixtures)."""
    community, phones = population(n)
    save(stack.settings.database_url, [community])
    asyncio.run(warm_up(stack, requests, community, phones, community.elders[-1]))
    return community, phones


@contextmanager
def chaos_stack(data_dir: Path, twilio_url: str, services: list[str] | None = None,
                **overrides: Any) -> Iterator[ChaosStack]:
    """A fresh stack under the supervisor running `services` (default: SERVICES), configured
    against the Twilio mock at `twilio_url` (and `overrides` of the settings), stopped on
    exit."""
    base = Settings(
        data_dir=data_dir, metrics_binds="", log_level="INFO",
        console_bind=f"127.0.0.1:{procs.free_port()}",
        ingest_http_bind=f"127.0.0.1:{procs.free_port()}",
        notify="twilio",
        twilio_account_sid="AC" + "0123456789abcdef" * 2, twilio_auth_token="bench-token",
        twilio_from_number="+15017122661", twilio_api_base_url=twilio_url,
        mqtt_shared_group=f"chaos-{uuid.uuid4().hex[:6]}",
    ).model_copy(update=overrides)
    stack = ChaosStack(base, data_dir, services)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def run(quick: bool = False, cases: tuple[str, ...] = CASES, twilio_delay_s: float = 0.0
        ) -> dict[str, Any]:
    """Every case in turn on one stack; returns the table (see the module docstring).
    `twilio_delay_s`: the mock answers each request that much later (a slow provider)."""
    sys.path.insert(0, str(REPO))  # the tests' Twilio mock is reused as is
    from tests import twilio_mock

    per_case = 20 if quick else PRESSES
    # The baseline first: the same flood, nothing killed (once, even if named in `cases`).
    cases = ("none", *(c for c in cases if c != "none"))
    external = Settings().kafka_bootstrap  # ELDERCARE_KAFKA_BOOTSTRAP: a Kafka not ours to kill
    if external and "kafka" in cases:
        _say(f"kafka: skipped (the stack runs against the Kafka at {external}, not an embedded"
             " one)")
        cases = tuple(c for c in cases if c != "kafka")
    load_before = os.getloadavg()[0]  # the machine is shared: figures include CPU waits
    rows: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
        data = Path(tmp)
        mock, prism, server = twilio_mock.start(data)
        try:
            with chaos_stack(data, mock.url, operator_phone=OPERATOR_PHONE) as stack:
                community, phones = population(per_case * len(cases) + 1)
                save(stack.settings.database_url, [community])
                mock.delay.update(dict.fromkeys(phones.values(), twilio_delay_s))
                mock.delay_lists.update(dict.fromkeys(phones.values(), twilio_delay_s))
                asyncio.run(warm_up(stack, mock.requests, community, phones,
                                    community.elders[-1]))
                for n, case in enumerate(cases):
                    elders = community.elders[n * per_case:(n + 1) * per_case]
                    _say(f"{case}: {per_case} presses, SIGKILL after {KILL_AFTER_PRESSES}"
                         if case != "restart" else f"{case}: whole stack stopped and started")
                    found = run_restart(stack, mock.requests, community, phones, elders) \
                        if case == "restart" else \
                        [run_case(case, stack, mock.requests, community, phones, elders)]
                    for row in found:
                        _say(f"  -> {asdict(row)}")
                    rows.extend(found)
        finally:
            server.should_exit = True
            procs.stop(prism)
    load = (round(load_before, 1), round(os.getloadavg()[0], 1))
    _say(f"\nload average (1 min) {load[0]} at the start, {load[1]} at the end; Twilio mock"
         f" answering {twilio_delay_s:g} s late; Kafka: {external or 'embedded tansu'}\n"
         + format_table(rows))
    baseline = rows[0]
    chaos = [r for r in rows[1:] if r.case in CASES]  # without the restart's split rows
    return {
        "presses": sum(r.presses for r in chaos),
        "lost": sum(r.lost for r in chaos),
        "duplicated": sum(r.duplicated for r in chaos),
        "max_s": max((r.max_s for r in chaos if r.max_s is not None), default=None),
        "incident_max_s": max((r.incident_max_s for r in chaos
                               if r.incident_max_s is not None), default=None),
        "cases": {r.case: {k: v for k, v in asdict(r).items() if k != "case"}
                  for r in rows[1:]},
        "baseline": {k: v for k, v in asdict(baseline).items() if k != "case"},
        "load_average": load,
        "twilio_delay_s": twilio_delay_s,
        "kafka": f"external {external}" if external else "embedded tansu",
    }


def format_table(rows: list[CaseResult]) -> str:
    """The per-case table as Markdown (also what docs/reliability-stack.md shows)."""
    head = ("| killed | presses | incidents | first calls | lost | duplicated "
            "| incident s, max / p50 | call started s, max / p50 | at Twilio mock s, max / p50 |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.case} | {r.presses} | {r.incidents} | {r.first_calls} | {r.lost} | "
              f"{r.duplicated} | {r.incident_max_s} / {r.incident_p50_s} | "
              f"{r.pipeline_max_s} / {r.pipeline_p50_s} | {r.max_s} / {r.p50_s} |"
              for r in rows]
    return "\n".join(lines)
