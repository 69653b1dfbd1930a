"""Recording live MQTT traffic to JSONL and playing it back faithfully.

One line per message: {"t": seconds since the recording started, "topic", "qos", "retain",
"payload" (UTF-8 text) or "payload_b64" (other bytes)}. Replay keeps the order, the relative
timing (divided by `speed`), the topics, QoS and retain flags; payloads are sent unchanged."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from foundation.mqtt import TOPIC_ROOT, MqttTarget, event_topic
from simulators import payloads
from simulators.accel import Window


@dataclass(frozen=True)
class Recorded:
    t: float
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def to_json(self) -> str:
        rec: dict[str, Any] = {"t": round(self.t, 6), "topic": self.topic, "qos": self.qos,
                               "retain": self.retain}
        try:
            rec["payload"] = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            rec["payload_b64"] = base64.b64encode(self.payload).decode()
        return json.dumps(rec, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Recorded:
        rec = json.loads(line)
        raw = (rec["payload"].encode("utf-8") if "payload" in rec
               else base64.b64decode(rec["payload_b64"]))
        return cls(float(rec["t"]), rec["topic"], raw, int(rec.get("qos", 0)),
                   bool(rec.get("retain", False)))


def read(path: Path) -> list[Recorded]:
    with path.open(encoding="utf-8") as f:
        return [Recorded.from_json(line) for line in f if line.strip()]


async def record(mqtt_url: str, out: TextIO, stop: asyncio.Event,
                 topic: str = f"{TOPIC_ROOT}/#", limit: int | None = None,
                 on_message: Callable[[Recorded], None] | None = None,
                 subscribed: asyncio.Event | None = None) -> int:
    """Subscribe to `topic` (QoS 1, so the QoS each message was published with is kept up to
    1) and append every message to `out` until `stop` is set or `limit` messages. `subscribed`
    is set once the broker has the subscription."""
    started = time.monotonic()
    count = 0
    async with MqttTarget.parse(mqtt_url).client(
            identifier=f"eldercare-recorder-{int(started * 1000) % 10**9}") as client:
        await client.subscribe(topic, qos=2)
        if subscribed is not None:
            subscribed.set()
        messages = aiter(client.messages)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while limit is None or count < limit:
                nxt = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    break
                m = nxt.result()
                raw = m.payload if isinstance(m.payload, bytes | bytearray) else \
                    str(m.payload or "").encode()
                rec = Recorded(time.monotonic() - started, m.topic.value, bytes(raw), m.qos,
                               bool(m.retain))
                out.write(rec.to_json() + "\n")
                out.flush()
                count += 1
                if on_message is not None:
                    on_message(rec)
        finally:
            stopper.cancel()
    return count


def retag(records: list[Recorded], renames: list[tuple[str, str]]) -> list[Recorded]:
    """Rewrite topics (e.g. a production community onto test devices): plain substring swaps."""
    out = []
    for r in records:
        topic = r.topic
        for old, new in renames:
            topic = topic.replace(old, new)
        out.append(Recorded(r.t, topic, r.payload, r.qos, r.retain))
    return out


async def replay(records: list[Recorded], mqtt_url: str, speed: float = 1.0,
                 on_sent: Callable[[Recorded], None] | None = None,
                 skip_retained: bool = True) -> float:
    """Publish `records` in order, `speed` times faster than recorded; returns real seconds.

    Retained messages seen at subscribe time (t≈0, the broker's old state) are skipped by
    default: they were not traffic during the recording."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    started = time.monotonic()
    pending: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(500)
    async with MqttTarget.parse(mqtt_url).client(max_inflight_messages=500) as client:
        client.pending_calls_threshold = 1000  # publishes are pipelined on purpose
        for rec in records:
            if skip_retained and rec.retain:
                continue
            delay = rec.t / speed - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            # paho queues publishes in call order on one connection, so order is kept.
            task = asyncio.create_task(client.publish(rec.topic, rec.payload, qos=rec.qos,
                                                      retain=rec.retain))
            task.add_done_callback(lambda _t: gate.release())
            pending.add(task)
            task.add_done_callback(pending.discard)
            if on_sent is not None:
                on_sent(rec)
        await asyncio.gather(*pending)
    return time.monotonic() - started


def accel_records(windows: list[Window], community_id: str, device_id: str, start_ts: float,
                  msg_prefix: str = "csv") -> list[Recorded]:
    """Accelerometer windows from a CSV as the device would publish them, timed as recorded."""
    out = []
    for n, w in enumerate(windows, start=1):
        body = {"msg_id": f"{msg_prefix}-{n}", "ts": round(start_ts + w.offset_s, 3),
                **payloads.accel_window(w.samples, w.rate_hz)}
        out.append(Recorded(w.offset_s + len(w.samples) / w.rate_hz,
                            event_topic(community_id, device_id), json.dumps(body).encode(), 1,
                            False))
    return out
