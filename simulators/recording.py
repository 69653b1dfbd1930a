"""Recording live MQTT traffic to JSONL and playing it back faithfully.

One line per message: {"t": seconds since the recording started, "topic", "qos", "retain",
"payload" (UTF-8 text) or "payload_b64" (other bytes)}. Replay keeps the order, the relative
timing (divided by `speed`), the topics, QoS and retain flags; payloads are sent unchanged."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
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


def retime(records: list[Recorded], end: float) -> list[Recorded]:
    """Shift every payload's device time (`ts`, epoch seconds) by whole days so the newest is
    within the day before `end`: a recording from last month played back now keeps its hours
    of the day (a morning stays a morning), inside ingest's clock window
    (`ELDERCARE_INGEST_MAX_PAST_S` must cover the recording's span)."""
    stamps = [ts for r in records if (ts := _ts(r.payload)) is not None]
    if not stamps:
        return records
    shift = (end - max(stamps)) // 86400 * 86400
    out = []
    for r in records:
        ts = _ts(r.payload)
        if ts is None:
            out.append(r)
            continue
        body = json.loads(r.payload)
        body["ts"] = round(ts + shift, 3)
        out.append(Recorded(r.t, r.topic, json.dumps(body, ensure_ascii=False).encode(), r.qos,
                            r.retain))
    return out


def _ts(payload: bytes) -> float | None:
    """A JSON object payload's numeric `ts`, if it has one."""
    if not payload.startswith(b"{"):
        return None
    try:
        ts = json.loads(payload).get("ts")
    except (ValueError, UnicodeDecodeError):
        return None
    return float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None


async def replay(records: list[Recorded], mqtt_url: str, speed: float = 1.0,
                 on_sent: Callable[[Recorded], None] | None = None,
                 skip_retained: bool = True) -> float:
    """Publish `records` in order, `speed` times faster than recorded (`math.inf`: as fast as
    the broker takes them); returns real seconds.

    Retained messages seen at subscribe time (t≈0, the broker's old state) are skipped by
    default: they were not traffic during the recording."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    if math.isinf(speed):
        sent = [r for r in records if not (skip_retained and r.retain)]
        seconds = await asyncio.to_thread(publish_all, sent, MqttTarget.parse(mqtt_url))
        for rec in sent:
            if on_sent is not None:
                on_sent(rec)
        return seconds
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


def publish_all(records: list[Recorded], target: MqttTarget, inflight: int = 1000,
                timeout_s: float = 3600.0) -> float:
    """Publish `records` in order on one connection as fast as the broker acknowledges them;
    returns the seconds until the last acknowledgement. paho's own network thread does the
    I/O: an asyncio task per message would cost more CPU than the broker does."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"eldercare-replay-{int(time.time() * 1000) % 10**9}",
                         protocol=paho.MQTTv5 if target.version == "5" else paho.MQTTv311)
    if target.username:
        client.username_pw_set(target.username, target.password)
    context = target.tls_context()
    if context is not None:
        client.tls_set_context(context)
    client.max_inflight_messages_set(inflight)
    window, connected = threading.Semaphore(inflight), threading.Event()
    # At most `inflight` messages in paho's hands: its bookkeeping of queued messages grows
    # with their number on every acknowledgement.
    client.on_publish = lambda *_args: window.release()
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.set() if not \
        reason.is_failure else None
    started = time.monotonic()
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        if not connected.wait(30):
            raise ConnectionError(f"MQTT broker {target.host}:{target.port} did not accept us")
        for rec in [*records, *[None] * inflight]:  # then wait for the last acknowledgements
            if not window.acquire(timeout=timeout_s):
                raise TimeoutError("the broker stopped acknowledging the replay")
            if rec is not None:  # QoS 0 counts when written, QoS 1 and 2 when acknowledged
                client.publish(rec.topic, rec.payload, qos=rec.qos, retain=rec.retain)
        return time.monotonic() - started
    finally:
        client.loop_stop()
        client.disconnect()


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
