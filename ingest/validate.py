"""One raw device message -> a canonical event, or a rejection that says why."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from devices.catalogue import CATALOGUE, DeviceKind
from devices.events import CanonicalEvent
from devices.schemas import DEVICE_MESSAGE
from eldercare.mqtt import TOPIC_ROOT
from ingest.directory import DeviceDirectory
from ingest.normalise import MAX_FUTURE, MAX_PAST, data_of, event_time


@dataclass(frozen=True)
class Rejection:
    """Why a message was not accepted; `reason` is a stable code used in metrics."""

    reason: str
    detail: str


def parse_topic(topic: str) -> tuple[str, str, str] | None:
    """eldercare/v1/{community}/{device}/{channel} -> (community, device, channel)."""
    prefix = TOPIC_ROOT + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


async def validate(
    topic: str, raw: bytes, directory: DeviceDirectory, received_at: datetime,
    max_payload: int, source: str = "mqtt",
    max_future: timedelta = MAX_FUTURE, max_past: timedelta = MAX_PAST,
) -> CanonicalEvent | Rejection:
    """Check size, topic, device, JSON and schema; normalise units and time."""
    if len(raw) > max_payload:
        return Rejection("payload_too_large", f"{len(raw)} bytes > limit {max_payload}")
    parsed = parse_topic(topic)
    if parsed is None:
        return Rejection(
            "bad_topic", f"topic {topic!r} is not {TOPIC_ROOT}/<community>/<device>/event"
        )
    community_id, device_id, _channel = parsed
    device = await directory.lookup(device_id)
    if device is None:
        return Rejection("unknown_device", f"device {device_id!r} is not registered")
    if device.community_id != community_id:
        return Rejection(
            "topic_mismatch",
            f"device {device_id!r} belongs to community {device.community_id!r},"
            f" not {community_id!r}",
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection("malformed_json", str(exc))
    try:
        msg = DEVICE_MESSAGE.validate_python(body)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        return Rejection("schema_violation", detail)
    spec = CATALOGUE[DeviceKind(device.kind)]
    if msg.type not in spec.message_types:
        return Rejection(
            "type_not_allowed", f"a {device.kind} does not send {msg.type!r} messages"
        )
    when, flags = event_time(msg.ts, received_at, max_future, max_past)
    return CanonicalEvent(
        event_id=f"{device_id}/{msg.msg_id}", elder_id=device.elder_id,
        community_id=device.community_id, device_id=device_id, device_kind=device.kind,
        room=device.room or None, type=msg.type, event_time=when, received_at=received_at,
        data=data_of(msg), source=source, flags=flags,
    )
