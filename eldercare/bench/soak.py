"""`eldercare bench soak`: 1,000,000 events through the embedded stack, with SOS presses.

The stack is the one `eldercare up` runs (embedded PostgreSQL, tansu, mosquitto; ingest,
detectors and dispatcher under the real `Supervisor`, which rolls the embedded Kafka once a
partition holds `ELDERCARE_KAFKA_ROLL_RECORDS` records). Watches publish heart-rate readings
one message at a time, QoS 1 (`mosquitto_pub -l`, as low-rate devices do: nothing batches
them before ingest), in chunks of `CHUNK` events, each published once Kafka has accepted the
one before (an SOS waits behind at most one chunk, as behind a busy community's readings);
meanwhile one fresh elder presses an SOS button every `PRESS_EVERY_S`. Reported: events/s,
rolls, and press -> incident / first call (p50, max) and lost presses over the whole run and
for the presses made within `NEAR_S` of a roll."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from aiokafka.errors import KafkaError

from devices.catalogue import DeviceKind
from devices.registry import Community, Device, Elder, save
from eldercare.bench import chaos
from eldercare.stack import roll
from foundation import kafka, procs
from foundation.config import Settings
from foundation.mqtt import MqttTarget, event_topic

EVENTS = 1_000_000
QUICK_EVENTS = 60_000
WATCHES = 8
CHUNK = 3_000  # published at once; the next chunk waits until Kafka has them all
PRESS_EVERY_S = 2.0
ROUND_S = 30.0  # a ladder round repeats a call 60 s or more later: not a duplicate
NEAR_S = 5.0  # a press this close to a roll counts as "around a roll"
SERVICES = ["ingest", "detectors", "dispatcher"]  # the SOS path (the store is benched apart)


def _say(msg: str) -> None:
    print(f"[bench soak] {msg}", file=sys.stderr, flush=True)


def watches(n: int) -> Community:
    """A community of `n` elders wearing a watch (heart-rate readings, no contacts)."""
    cid = f"soak-{uuid.uuid4().hex[:6]}"
    people = [Elder(f"{cid}-W{i:03d}", cid, f"浸泡老人{i:03d}", f"浸泡路{i}号",
                    devices=[Device(f"{cid}-W{i:03d}-watch", DeviceKind.SMART_WATCH, "客厅")])
              for i in range(n)]
    return Community(cid, "浸泡社区", "浸泡区", "浸泡街道", "", people, [])


def publish_readings(settings: Settings, community: Community, n: int) -> None:
    """Publish `n` normal heart-rate readings, spread over the community's watches, one MQTT
    message each (QoS 1); returns once mosquitto has acknowledged them all."""
    target = MqttTarget.parse(settings.mqtt_url)
    run, now = uuid.uuid4().hex[:8], time.time()
    per = max(1, n // len(community.elders))
    pubs = []
    for elder in community.elders:
        lines = "".join(json.dumps({"msg_id": f"{run}-{i}", "ts": now + i * 1e-4, "type": "hr",
                                    "bpm": 60 + i % 30}) + "\n" for i in range(per))
        args = ["mosquitto_pub", "-h", target.host, "-p", str(target.port), "-q", "1", "-l",
                "-t", event_topic(community.id, elder.devices[0].id)]
        if target.username:
            args += ["-u", target.username, "-P", target.password or ""]
        pub = subprocess.Popen(args, stdin=subprocess.PIPE)
        assert pub.stdin is not None
        pub.stdin.write(lines.encode())
        pub.stdin.close()
        pubs.append(pub)
    for pub in pubs:
        if pub.wait(timeout=600) != 0:
            raise RuntimeError(f"mosquitto_pub exited with {pub.returncode}")


def accepted(stack: chaos.ChaosStack) -> int:
    """Events Kafka has accepted since the start: what the rolls took away plus what the
    current broker holds (a roll happens only when nothing is in flight)."""
    assert stack.supervisor is not None and stack.supervisor.roller is not None
    try:
        ends = asyncio.run(roll.end_offsets(stack.settings, [kafka.EVENTS]))
    except (KafkaError, TimeoutError):  # being rolled: ask again later
        return 0
    return stack.supervisor.roller.log.rolled_records.get(kafka.EVENTS, 0) + sum(ends.values())


async def _presses(stack: chaos.ChaosStack, community: Community, stop: asyncio.Event,
                   pressed: dict[str, float]) -> None:
    for elder in community.elders:
        if stop.is_set():
            return
        body = json.dumps({"msg_id": f"sos-{uuid.uuid4().hex[:12]}", "ts": time.time(),
                           "type": "sos"}).encode()
        pressed[elder.id] = time.perf_counter()
        await chaos._press(stack, community.id, elder.devices[0].id, body)
        with_timeout = asyncio.ensure_future(stop.wait())
        await asyncio.wait([with_timeout], timeout=PRESS_EVERY_S)
        with_timeout.cancel()


async def _until_accepted(stack: chaos.ChaosStack, n: int, timeout_s: float = 300.0) -> int:
    """Poll Kafka (it has no notification) until it has accepted `n` events, for at most
    `timeout_s`; returns how many it has."""
    deadline = time.monotonic() + timeout_s
    for _ in itertools.count():
        have = await asyncio.to_thread(accepted, stack)
        if have >= n or time.monotonic() > deadline:
            return have
        await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def _drive(stack: chaos.ChaosStack, readings: Community, sos: Community, total: int,
                 pressed: dict[str, float]) -> tuple[float, int]:
    """Publish `total` readings while pressing SOS buttons; the seconds the events took to
    reach Kafka, and how many did not (within a minute of the last)."""
    stop = asyncio.Event()
    base = await asyncio.to_thread(accepted, stack)  # the warm-up's presses
    presses = asyncio.create_task(_presses(stack, sos, stop, pressed))
    started = time.perf_counter()
    sent = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        await asyncio.to_thread(publish_readings, stack.settings, readings, n)
        sent += n // WATCHES * WATCHES
        await _until_accepted(stack, base + sent)
        if sent % (CHUNK * 20) == 0:
            _say(f"{sent:,} published, rolls {stack.supervisor.roller.log.rolls}"  # type: ignore
                 f", {sent / (time.perf_counter() - started):,.0f} events/s, load "
                 f"{os.getloadavg()[0]:.1f}")
    stop.set()
    await presses
    expected = base + sent + len(pressed)  # readings and SOS presses
    have = await _until_accepted(stack, expected, 60.0)
    seconds = time.perf_counter() - started
    if have < expected:
        _say(f"only {have:,} of {expected:,} events reached Kafka")
    return seconds, expected - have


def duplicates(settings: Settings, requests: list[Any], phones: dict[str, str],
               pressed: dict[str, float]) -> int:
    """Presses with more than one incident, or two calls to the first contact less than
    `ROUND_S` apart. (`chaos.tally` counts any second call; over a long run that is the
    ladder's next round, 60 s after the first, for a call nobody answers at the mock.)"""
    with psycopg.connect(settings.database_url) as conn:
        twice = {str(e) for e, in conn.execute(
            "SELECT elder_id FROM incidents WHERE elder_id = ANY(%s) GROUP BY elder_id"
            " HAVING count(*) > 1", (list(pressed),)).fetchall()}
    calls: dict[str, list[float]] = {}
    for r in list(requests):
        if r.path.endswith("/Calls.json"):
            calls.setdefault(r.form.get("To", [""])[0], []).append(r.arrived)
    for elder in pressed:
        times = sorted(calls.get(phones[elder], []))
        if any(b - a < ROUND_S for a, b in itertools.pairwise(times)):
            twice.add(elder)
    return len(twice)


def _near_roll(pressed: dict[str, float], windows: list[tuple[float, float]]) -> set[str]:
    wall = time.time() - time.perf_counter()
    return {e for e, t in pressed.items()
            if any(a - NEAR_S <= t + wall <= b + NEAR_S for a, b in windows)}


def run(quick: bool = False) -> dict[str, Any]:
    """The soak (see the module docstring); returns its figures."""
    sys.path.insert(0, str(chaos.REPO))  # the tests' Twilio mock is reused as is
    from tests import twilio_mock

    total = QUICK_EVENTS if quick else EVENTS
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        data = Path(tmp)
        mock, prism, server = twilio_mock.start(data)
        try:
            with chaos.chaos_stack(data, mock.url, services=SERVICES) as stack:
                assert stack.supervisor is not None and stack.supervisor.roller is not None
                readings = watches(WATCHES)
                sos, phones = chaos.population(int(total / 1000) + 50)
                save(stack.settings.database_url, [readings, sos])
                asyncio.run(chaos.warm_up(stack, mock.requests, sos, phones, sos.elders[-1]))
                pressed: dict[str, float] = {}
                seconds, missing = asyncio.run(_drive(stack, readings, sos, total, pressed))
                events = accepted(stack)
                asyncio.run(chaos._wait_for_calls(mock.requests, phones, pressed,
                                                  chaos.TIMEOUT_S))
                log = stack.supervisor.roller.log
                whole = chaos.tally("whole run", stack.settings, mock.requests, phones, pressed)
                near = _near_roll(pressed, log.windows)
                away = chaos.tally("away from rolls", stack.settings, mock.requests, phones,
                                   {e: t for e, t in pressed.items() if e not in near})
                around = chaos.tally("around rolls", stack.settings, mock.requests, phones,
                                     {e: t for e, t in pressed.items() if e in near})
                dup = duplicates(stack.settings, mock.requests, phones, pressed)
                dup_near = duplicates(stack.settings, mock.requests, phones,
                                      {e: t for e, t in pressed.items() if e in near})
                largest = roll.largest(asyncio.run(roll.end_offsets(stack.settings)))
        finally:
            server.should_exit = True
            procs.stop(prism)
    load = (round(load_before, 1), round(os.getloadavg()[0], 1))
    figures = {
        "events": events,
        "events_per_s": round(events / seconds, 1),
        "seconds": round(seconds, 1),
        "events_missing": missing,
        "rolls": log.rolls,
        "roll_attempts": log.attempts,
        "roll_pause_s_max": round(max((b - a for a, b in log.windows), default=0.0), 2),
        "roll_records": stack.settings.kafka_roll_records,
        "largest_partition_at_end": largest,
        "presses": whole.presses,
        "lost": whole.lost,
        "incidents": whole.incidents,
        "duplicated": dup,
        "incident_p50_s": whole.incident_p50_s,
        "incident_max_s": whole.incident_max_s,
        "first_call_p50_s": whole.p50_s,
        "first_call_max_s": whole.max_s,
        "around_rolls": {"presses": around.presses, "lost": around.lost,
                         "incidents": around.incidents, "duplicated": dup_near,
                         "incident_p50_s": around.incident_p50_s,
                         "incident_max_s": around.incident_max_s,
                         "first_call_max_s": around.max_s},
        "load_average": load,
        # the same run's presses made more than NEAR_S from any roll
        "baseline": {"presses": away.presses, "lost": away.lost,
                     "incident_p50_s": away.incident_p50_s,
                     "incident_max_s": away.incident_max_s},
    }
    _say(json.dumps(figures, ensure_ascii=False))
    return figures
