"""`eldercare bench sos`: an SOS press on MQTT -> the first request at the Twilio mock.

Starts its own stack: embedded PostgreSQL, tansu and mosquitto, the ingest, detectors and
dispatcher services as child processes (as `eldercare up` runs them), and Prism behind the
recording proxy of the tests (`tests/twilio_mock.py`). Presses SOS buttons of distinct elders at
rest and under background telemetry (heart-rate messages at a given rate over MQTT), and times
each press from just before the MQTT publish to the arrival of the call to the elder's first
contact at the proxy (before Prism answers, so the mock's own ~90 ms is not counted; the proxy
answers repeated requests with Prism's first answer, so Prism's queue on a loaded machine does
not hold the dispatcher's workers either). After the platform, the Node-RED peer is measured
with the same spacing and rates (eldercare/bench/nodered.py).
Baselines measured in the same run: raw MQTT publish->receive, raw Kafka produce->consume, and
requests sent straight to the Twilio mock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from devices.catalogue import DeviceKind
from devices.registry import Community, Contact, Device, Elder, save
from eldercare.bench import nodered
from eldercare.bench.stack import running, start_services
from foundation import procs
from foundation.config import Settings
from foundation.mqtt import TOPIC_ROOT, MqttTarget, alarm_topic, event_topic

TIMEOUT_S = 30.0  # a press with no call after this long counts as lost
DRAIN_TIMEOUT_S = 180.0
SPARES = 16  # one per drain: the warm-up and one after each series
LOAD_DEVICES = 4
# 4 presses/s: Prism answers one request in ~90 ms on one core; much faster and the bench
# would measure the mock's queue instead of the platform.
PRESS_INTERVAL_S = 0.25


def _say(msg: str) -> None:
    print(f"[bench sos] {msg}", file=sys.stderr, flush=True)


@dataclass
class Population:
    community: Community
    first_contact: dict[str, str]  # elder id -> contact 1's phone
    spares_used: int = 0  # the last SPARES elders are pressed only to drain the pipeline


def _population(elders: int) -> Population:
    cid = f"bench-{uuid.uuid4().hex[:6]}"
    people = []
    for n in range(elders):
        eid = f"{cid}-E{n:04d}"
        people.append(Elder(
            eid, cid, f"压测老人{n:04d}", f"压测路{n}号",
            contacts=[Contact(1, f"联系人{n:04d}", "女儿", f"+86139{n:08d}")],
            devices=[Device(f"{eid}-sos", DeviceKind.SOS_BUTTON, "卧室"),
                     Device(f"{eid}-watch", DeviceKind.SMART_WATCH, "卧室")],
        ))
    # No duty staff: the first Twilio request of a critical ladder is then the call to contact 1,
    # which names the elder by its number.
    c = Community(cid, "压测社区", "压测区", "压测街道", "", people, [])
    return Population(c, {e.id: e.contacts[0].phone for e in people})


def _pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    arr = np.array(values) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p95_ms": round(float(np.percentile(arr, 95)), 1),
            "p99_ms": round(float(np.percentile(arr, 99)), 1),
            "max_ms": round(float(arr.max()), 1)}


async def _mqtt_baseline(settings: Settings, n: int) -> dict[str, float | None]:
    target = MqttTarget.parse(settings.mqtt_url)
    # Under the platform's topic root (the broker's ACL) but deeper than ingest subscribes.
    topic = f"{TOPIC_ROOT}/bench/{uuid.uuid4().hex}/baseline/latency"
    got: dict[int, float] = {}
    async with target.client() as sub, target.client() as pub:
        await sub.subscribe(topic, qos=1)

        async def receive() -> None:
            async for message in sub.messages:
                got[int(bytes(message.payload))] = time.perf_counter()
                if len(got) == n:
                    return

        task = asyncio.create_task(receive())
        sent = {}
        for i in range(n):
            sent[i] = time.perf_counter()
            await pub.publish(topic, str(i).encode(), qos=1)
            await asyncio.sleep(0.005)
        await asyncio.wait_for(task, 10)
    return _pct([got[i] - sent[i] for i in range(n)])


async def _kafka_baseline(settings: Settings, n: int) -> dict[str, float | None]:
    topic = "eldercare.bench.v1"
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=0)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"bench-{uuid.uuid4().hex}", fetch_max_wait_ms=5,
                                auto_offset_reset="latest")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up")
        await consumer.getmany(timeout_ms=2000)
        latencies = []
        for i in range(n):
            t0 = time.perf_counter()
            await producer.send_and_wait(topic, str(i).encode())
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                if any(r.value == str(i).encode() for rs in batch.values() for r in rs):
                    break
            latencies.append(time.perf_counter() - t0)
    finally:
        await consumer.stop()
        await producer.stop()
    return _pct(latencies)


async def _telemetry(settings: Settings, pop: Population, rate: float,
                     stop: asyncio.Event) -> int:
    """Heart-rate messages at `rate` per second in total (QoS 1), written by `mosquitto_pub -l`
    processes (one per watch, a few watches) so the load generator is not the bottleneck."""
    if rate <= 0:
        await stop.wait()
        return 0
    target = MqttTarget.parse(settings.mqtt_url)
    watches = [f"{e.id}-watch" for e in pop.community.elders[-LOAD_DEVICES:]]
    pubs = [subprocess.Popen(  # noqa: ASYNC220 - a few processes, started before measuring
        ["mosquitto_pub", "-h", target.host, "-p", str(target.port), "-q", "1", "-l",
         "-u", target.username or "", "-P", target.password or "",
         "-t", event_topic(pop.community.id, dev)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) for dev in watches]
    sent, tick, owed = 0, 0.01, 0.0
    start = time.perf_counter()
    try:
        while not stop.is_set():
            owed = rate * (time.perf_counter() - start) - sent
            now = time.time()
            for _ in range(int(owed)):
                line = json.dumps({"msg_id": f"hr-{sent}", "ts": now, "type": "hr", "bpm": 72})
                pub = pubs[sent % len(pubs)]
                assert pub.stdin is not None
                pub.stdin.write(line.encode() + b"\n")
                sent += 1
            for pub in pubs:
                assert pub.stdin is not None
                pub.stdin.flush()
            await asyncio.sleep(tick)
    finally:
        for pub in pubs:
            if pub.stdin is not None:
                pub.stdin.close()
            procs.stop(pub, timeout=5)
    return sent


async def press(client: aiomqtt.Client, pop: Population, elder: Elder, alarm: bool = True
                ) -> tuple[str, float]:
    """Press `elder`'s SOS button over `client`: (the first contact's phone, the
    `time.perf_counter()` just before the publish). On the button's alarm channel, as the
    platform's devices publish an SOS (`alarm` False: on its event channel, for code from
    before the alarm channel)."""
    body = json.dumps({"msg_id": f"sos-{uuid.uuid4().hex[:12]}", "ts": time.time(),
                       "type": "sos"}).encode()
    topic = (alarm_topic if alarm else event_topic)(pop.community.id, f"{elder.id}-sos")
    at = time.perf_counter()
    await client.publish(topic, body, qos=1)
    return pop.first_contact[elder.id], at


async def first_calls(requests: list[Any], pressed: dict[str, float]) -> dict[str, float]:
    """Phone -> when the first call to it reached the Twilio mock after its press (`pressed`:
    phone -> press time); waits up to `TIMEOUT_S` for all of them."""
    deadline = time.perf_counter() + TIMEOUT_S
    first: dict[str, float] = {}
    while True:
        for req in list(requests):
            to = req.form.get("To", [""])[0]
            if to in pressed and to not in first and req.path.endswith("/Calls.json") \
                    and req.arrived >= pressed[to]:
                first[to] = req.arrived
        if len(first) == len(pressed) or time.perf_counter() > deadline:
            return first
        await asyncio.sleep(0.05)


async def _series(settings: Settings, pop: Population, requests: list[Any], rate: float,
                  presses: int, first_elder: int) -> dict[str, Any]:
    stop = asyncio.Event()
    background = asyncio.create_task(_telemetry(settings, pop, rate, stop))
    began = time.perf_counter()
    await asyncio.sleep(1.0 if rate else 0)  # let the load settle before the first press
    # Fresh elders per series: the detectors fold an elder's presses within 15 min into one.
    elders = pop.community.elders[first_elder:first_elder + presses]
    pressed: dict[str, float] = {}
    async with MqttTarget.parse(settings.mqtt_url).client() as client:
        for n, elder in enumerate(elders):
            phone, at = await press(client, pop, elder)
            pressed[phone] = at
            if n + 1 < len(elders):
                await asyncio.sleep(PRESS_INTERVAL_S)
    first = await first_calls(requests, pressed)
    stop.set()
    sent = await background
    elapsed = time.perf_counter() - began
    latencies = [first[to] - t0 for to, t0 in pressed.items() if to in first]
    return {"offered_per_s": rate, "achieved_per_s": round(sent / elapsed, 1) if rate else 0.0,
            "telemetry_sent": sent, "presses": len(pressed), "lost": len(pressed) - len(first),
            **_pct(latencies),
            "_latencies": latencies}


_STAGES = """
SELECT extract(epoch FROM (a.alert->'evidence'->0->>'received_at')::timestamptz - i.event_time)
         AS ingest,
       extract(epoch FROM (a.alert->>'detected_at')::timestamptz
                          - (a.alert->'evidence'->0->>'received_at')::timestamptz) AS detect,
       extract(epoch FROM a.received_at - (a.alert->>'detected_at')::timestamptz) AS record,
       extract(epoch FROM s.claimed_at - a.received_at) AS claim,
       extract(epoch FROM n.created_at - s.claimed_at) AS prepare,
       extract(epoch FROM n.updated_at - n.created_at) AS twilio
FROM incidents i
JOIN LATERAL (SELECT * FROM incident_alerts x WHERE x.incident_id = i.id
              ORDER BY received_at LIMIT 1) a ON true
JOIN LATERAL (SELECT * FROM notifications y WHERE y.incident_id = i.id AND y.channel = 'voice'
              ORDER BY id LIMIT 1) n ON true
JOIN escalation_steps s ON s.id = n.step_id
WHERE i.community_id = %s AND i.status <> 'resolved'
"""


def _stages(settings: Settings, community_id: str) -> dict[str, float | None]:
    """Median time per stage (database clock = this machine's clock; a database time is the
    start of the transaction that wrote it): press -> event received by ingest (MQTT), ->
    alert detected (ingest's produce, Kafka, the detectors' fetch), -> alert recorded
    (detectors' produce, Kafka, the dispatcher's fetch), -> first call step claimed (the step
    runner woken), -> call recorded (incident facts, the message rendered), -> Twilio answered
    (SDK + proxy + Prism)."""
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(_STAGES, (community_id,)).fetchall()
    names = ("press_to_ingest", "ingest_to_alert", "alert_to_incident", "incident_to_claim",
             "claim_to_call_row", "twilio_request")
    if not rows:
        return dict.fromkeys(names)
    arr = np.array([[float(v or 0) for v in r] for r in rows]) * 1000
    return {n: round(float(np.median(arr[:, k])), 1) for k, n in enumerate(names)}


def _reset(settings: Settings) -> None:
    """Close every incident so the next series opens new ones for the same elders (again if
    it deadlocks with a step the dispatcher is running)."""
    for attempt in range(5):
        try:
            with psycopg.connect(settings.database_url) as conn:
                conn.execute("UPDATE escalation_steps SET status = 'cancelled'"
                             " WHERE status = 'pending'")
                conn.execute("UPDATE incidents SET status = 'resolved', resolved_at = now(),"
                             " outcome = 'false_alarm' WHERE status <> 'resolved'")
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == 4:
                raise


async def _twilio_baseline(mock_url: str, settings: Settings, n: int) -> dict[str, float | None]:
    import httpx

    url = f"{mock_url}/2010-04-01/Accounts/{settings.twilio_account_sid}/Calls.json"
    latencies = []
    async with httpx.AsyncClient(auth=(settings.twilio_account_sid, "x")) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            r = await client.post(url, data={"To": "+8613900000000", "From": "+15017122661",
                                             "Twiml": "<Response/>"})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)
    return _pct(latencies)


def _rates(quick: bool) -> list[float]:
    """Background rates tried in order until one fails (p99 >= 1 s or a press lost)."""
    if quick:
        return [0.0, 1000.0, 2000.0]
    return [0.0, 1000.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0, 12000.0, 15000.0, 20000.0,
            25000.0, 30000.0]


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns the figures (see the module docstring)."""
    rates = _rates(quick)
    per_series = 20 if quick else 50
    workers = max(1, int(os.environ.get("ELDERCARE_BENCH_INGEST_WORKERS", "1")))
    ingest = tuple(f"ingest@{n}" for n in range(workers))
    with tempfile.TemporaryDirectory(prefix="bench-sos-") as tmp, running(Path(tmp)) as stack:
        pop = _population(per_series * len(rates) + SPARES)
        save(stack.settings.database_url, [pop.community])
        start_services(stack, (*ingest, "detectors", "dispatcher"))
        figures = asyncio.run(_measure(stack.settings, stack.mock.url, pop,
                                       stack.mock.requests, rates, per_series, workers))
    figures["ingest_workers"] = workers
    peer = nodered.run(per_series, PRESS_INTERVAL_S, rates[1:], quick)
    if peer is not None:
        figures["baseline"]["nodered"] = peer
        figures["ratios"].update(nodered.ratios(figures, peer))
    return figures


async def _measure(settings: Settings, mock_url: str, pop: Population, requests: list[Any],
                   rates: list[float], per_series: int, workers: int = 1) -> dict[str, Any]:
    _say("warming up: one SOS through the whole pipeline")
    await _drained(settings, pop, requests, DRAIN_TIMEOUT_S)
    _say("baselines: MQTT publish->receive, Kafka produce->consume, Twilio mock request")
    baseline = {
        "mqtt_publish_receive": await _mqtt_baseline(settings, 200),
        "kafka_produce_consume": await _kafka_baseline(settings, 200),
        "twilio_mock_request": await _twilio_baseline(mock_url, settings, 50),
    }
    series = []
    for n, rate in enumerate(rates):
        _say(f"{per_series} presses at {rate:.0f} telemetry msg/s in the background")
        accepted = await _ingest_accepted(settings, workers)
        result = await _series(settings, pop, requests, rate, per_series, n * per_series)
        result["stages_p50_ms"] = _stages(settings, pop.community.id)
        _reset(settings)
        probes = await _drained(settings, pop, requests, DRAIN_TIMEOUT_S)  # no backlog after
        # Everything published in the series is through ingest now (the drain's probe came
        # behind it): what ingest did not turn into an event, the broker dropped.
        made = await _ingest_accepted(settings, workers) - accepted
        result["telemetry_lost"] = max(
            0, result["telemetry_sent"] + result["presses"] + probes - round(made))
        _say(f"  -> p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, lost {result['lost']}"
             f" presses, {result['telemetry_lost']} telemetry messages")
        series.append(result)
        if result["lost"] or result["telemetry_lost"] or result["p99_ms"] is None \
                or result["p99_ms"] >= 1000:
            _say("  -> past the limit: higher rates are not tried")
            break
        if rate and result["achieved_per_s"] < 0.9 * rate:
            _say("  -> the load generator offers no more: higher rates are not tried")
            break
    everything = [x for s in series for x in s.pop("_latencies")]
    all_latencies_ok = [s for s in series if s["lost"] == 0 and s["telemetry_lost"] == 0
                        and s["p99_ms"] is not None and s["p99_ms"] < 1000]
    at_rest = series[0]
    at_10k = next((s for s in series if s["offered_per_s"] == 10000.0), None)
    return {
        "presses": sum(s["presses"] for s in series),
        "lost": sum(s["lost"] for s in series),
        **_pct(everything),  # over every press of every series
        "at_rest_p50_ms": at_rest["p50_ms"], "at_rest_p99_ms": at_rest["p99_ms"],
        "p99_ms_at_10k": at_10k["p99_ms"] if at_10k else None,
        "max_rate_p99_under_1s": max((s["offered_per_s"] for s in all_latencies_ok),
                                     default=None),
        # True: every offered rate passed, so the real limit is higher than measured.
        "max_rate_is_highest_offered": len(all_latencies_ok) == len(rates),
        "series": series,
        "baseline": baseline,
        "ratios": {
            "p50 at rest / kafka p50": _ratio(at_rest["p50_ms"],
                                              baseline["kafka_produce_consume"]["p50_ms"]),
            "p50 at rest / mqtt p50": _ratio(at_rest["p50_ms"],
                                             baseline["mqtt_publish_receive"]["p50_ms"]),
        },
    }


async def _drained(settings: Settings, pop: Population, requests: list[Any],
                   timeout: float) -> int:
    """Press a spare elder's SOS (every 2 s) until its call arrives: the pipeline has then
    worked off any backlog (and, at start, every service has subscribed); the number of
    presses it took. Pressed on the device's event channel, not its alarm channel, so that it
    comes behind any telemetry still queued for ingest. Each drain uses a new spare, since
    detectors may fold repeated presses of one elder into one alert."""
    spare = pop.community.elders[pop.spares_used - SPARES]
    pop.spares_used += 1
    phone = pop.first_contact[spare.id]
    seen = sum(1 for r in list(requests) if r.form.get("To") == [phone])
    deadline = time.perf_counter() + timeout
    probes = 0
    async with MqttTarget.parse(settings.mqtt_url).client() as client:
        while time.perf_counter() < deadline:
            body = json.dumps({"msg_id": f"probe-{uuid.uuid4().hex[:12]}", "ts": time.time(),
                               "type": "sos"})
            await client.publish(event_topic(pop.community.id, f"{spare.id}-sos"),
                                 body.encode(), qos=1)
            probes += 1
            for _ in range(40):
                await asyncio.sleep(0.05)
                if sum(1 for r in list(requests) if r.form.get("To") == [phone]) > seen:
                    _reset(settings)
                    return probes
    raise RuntimeError(f"the pipeline did not reach Twilio within {timeout:.0f} s")


async def _ingest_accepted(settings: Settings, workers: int) -> float:
    """Device messages ingest has turned into events so far (every worker's
    `eldercare_ingest_accepted_total`, MQTT)."""
    import httpx

    host, port = settings.ingest_http_bind.rsplit(":", 1)
    total = 0.0
    async with httpx.AsyncClient(timeout=10) as client:
        for n in range(workers):
            text = (await client.get(f"http://{host}:{int(port) + n}/metrics")).text
            for line in text.splitlines():
                if line.startswith('eldercare_ingest_accepted_total{source="mqtt"} '):
                    total += float(line.split()[-1])
    return total


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 1) if a is not None and b else None
