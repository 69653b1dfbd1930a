"""`eldercare bench ingest`: sustained MQTT -> Kafka events/s with 1 and 2 ingest worker
processes, next to the raw receive rate of one bare aiomqtt subscriber on the same broker, fed
by the same publishers (`mosquitto_pub -l`, QoS 1, one per device topic) in the same run.

Each consumer drains the same-sized backlog queued in the broker while it was away (the burst
after an outage): rate = messages / (last one received or accepted by Kafka - consumer resumed).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.catalogue import DeviceKind
from devices.registry import Community, Device, Elder, save
from eldercare.stack import embedded
from foundation import db, kafka, procs
from foundation.config import Settings, child_env
from foundation.mqtt import MqttTarget, event_topic
from ingest.mqtt_session import MAX_IN_FLIGHT, SESSION_EXPIRY_S, session_protocol

PUBLISHERS = 4


def _progress(text: str) -> None:
    print(f"[bench ingest] {text}", file=sys.stderr, flush=True)


def _population(tag: str) -> Community:
    elders = [Elder(f"E-{tag}-{n}", f"c-{tag}", f"压测老人{n}", f"压测路{n}号",
                    devices=[Device(f"W-{tag}-{n}", DeviceKind.SMART_WATCH, "客厅")])
              for n in range(PUBLISHERS)]
    return Community(f"c-{tag}", "压测社区", "压测区", "压测街道", elders=elders)


def _publish(settings: Settings, community: Community, n: int, run: str) -> float:
    """Start the publishers (each sends n / PUBLISHERS valid readings); the start time."""
    target = MqttTarget.parse(settings.mqtt_url)
    per = n // PUBLISHERS
    now = time.time()
    procs_: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    for elder in community.elders:
        device = elder.devices[0].id
        lines = "".join(json.dumps({"msg_id": f"{run}-{i}", "ts": now, "type": "hr",
                                    "bpm": 60 + i % 40}) + "\n" for i in range(per))
        p = subprocess.Popen(
            ["mosquitto_pub", "-h", target.host, "-p", str(target.port), "-q", "1", "-l",
             "-t", event_topic(community.id, device)], stdin=subprocess.PIPE)
        assert p.stdin is not None
        p.stdin.write(lines.encode())
        p.stdin.close()
        procs_.append(p)
    for p in procs_:
        p.wait()
    return started


def _raw_client(target: MqttTarget, ident: str, v5: bool, **kw: Any) -> aiomqtt.Client:
    """The bare subscriber's client: MQTT 3.1.1 with a persistent session, or MQTT 5 with the
    session expiry and Receive Maximum ingest's own session uses (`ingest.mqtt_session`)."""
    if not v5:
        return target.client(identifier=ident, clean_session=False, **kw)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = MAX_IN_FLIGHT
    return target.client(identifier=ident, protocol=aiomqtt.ProtocolVersion.V5,
                         clean_start=False, properties=props, **kw)


async def _raw(settings: Settings, community: Community, n: int, v5: bool = False) -> float:
    """One bare aiomqtt subscriber (QoS 1, library acks) draining a backlog: messages/s. With
    `v5`, it speaks MQTT 5 with a shared subscription, as ingest does, and does nothing else."""
    target = MqttTarget.parse(settings.mqtt_url)
    total = (n // PUBLISHERS) * PUBLISHERS
    ident = f"bench-raw-{uuid.uuid4().hex[:6]}"
    topic = f"$share/{ident}/eldercare/v1/+/+/+" if v5 else "eldercare/v1/+/+/+"
    async with _raw_client(target, ident, v5) as client:
        await client.subscribe(topic, qos=1)
    await asyncio.to_thread(_publish, settings, community, n, "raw")  # queued in the session
    async with _raw_client(target, ident, v5, max_queued_incoming_messages=200_000) as client:
        started = time.monotonic()
        got = 0
        async for _ in client.messages:
            got += 1
            if got >= total:
                break
        return total / (time.monotonic() - started)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _ingest_rate(settings: Settings, community: Community, n: int, workers: int,
                 workdir: Path) -> float:
    """`eldercare ingest --workers N` draining a backlog: events/s accepted by Kafka, read
    from the workers' /metrics. The workers are paused (SIGSTOP) while the backlog is
    published, so the figure is the consumers' capacity, not the publishers' speed."""
    group = f"bench{uuid.uuid4().hex[:6]}"
    ws = settings.model_copy(update={"mqtt_shared_group": group})
    env = child_env(ws, clean=True)
    log = workdir / f"ingest-{group}.log"
    proc = procs.spawn([sys.executable, "-m", "eldercare.cli", "ingest", "--workers",
                        str(workers)], log, env)
    host, port = ws.ingest_http_bind.rsplit(":", 1)
    urls = [f"http://{host}:{int(port) + w}/metrics" for w in range(workers)]
    total = (n // PUBLISHERS) * PUBLISHERS
    paused: list[int] = []
    try:
        with httpx.Client(timeout=5) as http:

            def accepted() -> float | None:
                count = 0.0
                for url in urls:
                    try:
                        text = http.get(url).text
                    except httpx.HTTPError:
                        return None
                    count += sum(float(line.split()[-1]) for line in text.splitlines()
                                 if line.startswith("eldercare_ingest_accepted_total{"))
                return count

            deadline = time.monotonic() + 60
            while (not log.exists() or log.read_text().count("ingest subscribed") < workers
                   or accepted() is None):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"ingest workers did not start; see {log}")
                time.sleep(0.1)
            paused = _children(proc.pid)
            for pid in paused:
                os.kill(pid, signal.SIGSTOP)
            _publish(ws, community, n, group)
            started = time.monotonic()
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
            paused = []
            # Polled gently: every /metrics scrape costs the workers CPU (+-0.1 s resolution).
            while (accepted() or 0) < total:
                if time.monotonic() - started > 300:
                    raise RuntimeError(f"ingest accepted {accepted()} of {total}; see {log}")
                time.sleep(0.1)
            return total / (time.monotonic() - started)
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(quick: bool = False) -> dict[str, Any]:
    """Raw subscriber, then 1 worker, then 2 workers, each over the same fresh messages."""
    if not shutil.which("mosquitto_pub") or not Path("/usr/sbin/mosquitto").exists():
        raise RuntimeError("bench ingest needs mosquitto and mosquitto-clients")
    n = 8_000 if quick else 30_000
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        _progress("starting postgres, tansu, mosquitto")
        pg = embedded.start_postgres(workdir)
        kf = embedded.start_kafka(workdir)
        port = procs.free_port()
        (workdir / "mosquitto.conf").write_text(embedded.mosquitto_config(port))
        broker = procs.spawn(["/usr/sbin/mosquitto", "-c", str(workdir / "mosquitto.conf")],
                             workdir / "mosquitto.log")
        try:
            procs.wait_for_port(port, broker)
            settings = Settings(
                database_url=pg.url, kafka_bootstrap=kf.url, mqtt_url=f"mqtt://127.0.0.1:{port}",
                data_dir=workdir, ingest_http_bind=f"127.0.0.1:{procs.free_port()}",
            )
            db.upgrade(settings.database_url)
            asyncio.run(kafka.ensure_topics(settings))
            community = _population(uuid.uuid4().hex[:6])
            save(settings.database_url, [community])
            _progress(f"raw aiomqtt subscriber, {n} messages")
            raw = asyncio.run(_raw(settings, community, n))
            _progress(f"raw {raw:.0f}/s; the same over MQTT 5 as ingest speaks it")
            raw5 = asyncio.run(_raw(settings, community, n, v5=True))
            _progress(f"raw MQTT 5 {raw5:.0f}/s; 1 ingest worker")
            one = _ingest_rate(settings, community, n, 1, workdir)
            _progress(f"1 worker {one:.0f}/s; 2 ingest workers")
            two = _ingest_rate(settings, community, n, 2, workdir)
            _progress(f"2 workers {two:.0f}/s")
        finally:
            procs.stop(broker)
            kf.stop()
            pg.stop()
    return {
        "messages": n, "publishers": PUBLISHERS,
        "raw_receive_per_s": round(raw), "workers_1_per_s": round(one),
        "workers_2_per_s": round(two),
        "raw_v5_receive_per_s": round(raw5),
        "workers_1_vs_raw": round(one / raw, 2), "workers_1_vs_raw_v5": round(one / raw5, 2),
        "workers_2_vs_1": round(two / one, 2),
        # MQTT version of the workers' own session (`ELDERCARE_INGEST_MQTT_SESSION`)
        "ingest_mqtt_session": session_protocol(settings),
        "baseline": {"raw_receive_per_s": round(raw),
                     "what": "one bare aiomqtt subscriber, QoS 1, same broker and backlog",
                     "raw_v5_receive_per_s": round(raw5),
                     "what_v5": "the same over MQTT 5 with ingest's shared subscription, "
                                "session expiry and Receive Maximum"},
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
