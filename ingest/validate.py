"""One raw device message -> a canonical event, or a rejection that says why."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, tzinfo

import orjson
from pydantic import ValidationError

from devices.catalogue import CATALOGUE, DeviceKind
from devices.schemas import DEVICE_MESSAGE, DeviceMessage, Status
from foundation.contracts.events import URGENT_TYPES, CanonicalEvent
from foundation.deadletter import Rejection
from foundation.mqtt import ALARM_CHANNEL, TOPIC_ROOT
from ingest.directory import DeviceDirectory, DeviceInfo
from ingest.normalise import MAX_FUTURE, MAX_PAST, data_of, event_time

CHANNELS = ("event", "status", ALARM_CHANNEL)


def parse_topic(topic: str) -> tuple[str, str, str] | None:
    """eldercare/v1/{community}/{device}/{channel} -> (community, device, channel)."""
    prefix = TOPIC_ROOT + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


RANGE_ERRORS = frozenset({
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "value_error",
})


def _rejection(exc: ValidationError) -> Rejection:
    """A readable reason: `out_of_range` when every problem is a value outside its limits."""
    errors = exc.errors(include_url=False)
    parts = []
    for e in errors:
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = "" if e["type"] == "missing" else f" (got {repr(e['input'])[:60]})"
        parts.append(f"{where}: {e['msg']}{got}")
    in_range = not all(e["type"] in RANGE_ERRORS for e in errors)
    return Rejection("schema_violation" if in_range else "out_of_range", "; ".join(parts))


async def check_device(
    directory: DeviceDirectory, device_id: str, community_id: str | None,
) -> DeviceInfo | Rejection:
    """The registered device, or why the message cannot be attributed to it."""
    device = await directory.lookup(device_id)
    if device is None:
        return Rejection("unknown_device", f"device {device_id!r} is not registered")
    if community_id is not None and device.community_id != community_id:
        return Rejection(
            "topic_mismatch",
            f"device {device_id!r} belongs to community {device.community_id!r},"
            f" not {community_id!r}",
        )
    return device


def to_event(
    device: DeviceInfo, body: object, channel: str, received_at: datetime, source: str,
    max_future: timedelta = MAX_FUTURE, max_past: timedelta = MAX_PAST, local_tz: tzinfo = UTC,
) -> CanonicalEvent | Rejection:
    """A decoded JSON body from `device` on `channel` ("event" or "status") -> canonical event."""
    if channel == "status" and not (isinstance(body, dict) and "type" in body):
        return _status_event(device, body, received_at, source, max_future, max_past,
                             local_tz)
    dropped: Rejection | None = None
    try:
        msg = DEVICE_MESSAGE.validate_python(body)
    except ValidationError as exc:
        rest = _without_bad_location(body, exc)
        if rest is None:
            return _rejection(exc)
        # An SOS or a fall is never refused for a broken position: the press goes through,
        # the position is dropped and the reason kept with the event.
        msg, dropped = rest, _rejection(exc)
    spec = CATALOGUE[DeviceKind(device.kind)]
    if msg.type not in spec.message_types:
        return Rejection(
            "type_not_allowed", f"a {device.kind} does not send {msg.type!r} messages"
        )
    when, flags = event_time(msg.ts, received_at, max_future, max_past, local_tz)
    data = data_of(msg, when, local_tz)
    if dropped is not None:
        data["location_rejected"] = dropped.detail[:300]
        flags = [*flags, "location_invalid"]
    return _event(device, msg.msg_id, msg.type, when, received_at, data, source, flags)


# Messages that must never be lost because of what they say about position.
_PRESS_TYPES = frozenset({"sos", "fall"})


def _without_bad_location(body: object, exc: ValidationError) -> DeviceMessage | None:
    """The press without its `location`, when its only problems are in its position."""
    if not (isinstance(body, dict) and body.get("type") in _PRESS_TYPES and "location" in body):
        return None
    errors = exc.errors(include_url=False)
    if not all(len(e["loc"]) >= 2 and e["loc"][1] == "location" for e in errors):
        return None
    try:
        return DEVICE_MESSAGE.validate_python({k: v for k, v in body.items() if k != "location"})
    except ValidationError:
        return None


def _status_event(
    device: DeviceInfo, body: object, received_at: datetime, source: str,
    max_future: timedelta, max_past: timedelta, local_tz: tzinfo,
) -> CanonicalEvent | Rejection:
    try:
        status = Status.model_validate(body)
    except ValidationError as exc:
        return _rejection(exc)
    when, flags = (received_at, []) if status.ts is None else event_time(
        status.ts, received_at, max_future, max_past, local_tz)
    # A last will has no id of its own: the receive time (ms) names it.
    msg_id = status.msg_id or f"status-{int(received_at.timestamp() * 1000)}"
    data: dict[str, object] = status.model_dump(
        exclude={"msg_id", "ts"}, exclude_none=True, mode="json")
    if not status.online:
        data.setdefault("reason", "last_will")
    kind = "online" if status.online else "offline"
    return _event(device, msg_id, kind, when, received_at, data, source, flags)


def _event(
    device: DeviceInfo, msg_id: str, kind: str, when: datetime, received_at: datetime,
    data: dict[str, object], source: str, flags: list[str],
) -> CanonicalEvent:
    return CanonicalEvent(
        event_id=f"{device.device_id}/{msg_id}", elder_id=device.elder_id,
        community_id=device.community_id, device_id=device.device_id, device_kind=device.kind,
        room=device.room or None, type=kind, event_time=when, received_at=received_at,
        data=data, source=source, flags=flags,
    )


_LONG_DIGITS = re.compile(rb"[0-9]{19}")
MAX_DEPTH = 16  # arrays/objects inside each other; device messages use 3 (accel samples)
MAX_DIGITS = 32  # digits of one integer; Python itself refuses beyond 4,300
# PostgreSQL cannot store NUL in text or jsonb, nor a lone UTF-16 surrogate: refuse them here.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


class _NumberTooLarge(ValueError):
    pass


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise _NumberTooLarge(f"an integer of {digits} digits > limit {MAX_DIGITS}")
    return int(text)


def decode(raw: bytes, max_depth: int = MAX_DEPTH) -> object | Rejection:
    """The JSON body, or a rejection: `malformed_json`, `nesting_too_deep`, `number_too_large`
    or `invalid_text` (a NUL character or a lone surrogate in a string)."""
    fast = _LONG_DIGITS.search(raw) is None  # orjson reads integers beyond 64 bits as floats
    body: object = None
    if fast:
        try:
            body = orjson.loads(raw)  # fast, and stricter than the standard library...
        except orjson.JSONDecodeError:
            fast = False
    if not fast:  # ...which has the last word (NaN, a BOM, huge integers) and the usual error text
        try:
            body = json.loads(raw, parse_int=_int)
        except _NumberTooLarge as exc:
            return Rejection("number_too_large", str(exc))
        except RecursionError:
            return Rejection("nesting_too_deep", f"nested deeper than the limit of {max_depth}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return Rejection("malformed_json", str(exc))
        except ValueError as exc:  # e.g. Python's own limit on integer digits
            return Rejection("number_too_large", str(exc)[:300])
    # Cheap tests first: the walk is needed only when something could be wrong.
    if not fast or b"\\u0000" in raw or raw.count(b"[") + raw.count(b"{") > max_depth:
        why = inspect(body, max_depth)
        if why is not None:
            return why
    return body


def inspect(body: object, max_depth: int = MAX_DEPTH) -> Rejection | None:
    """Why a decoded JSON value cannot be taken (too deep, unstorable text), or None."""
    stack: list[tuple[object, int]] = [(body, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _BAD_TEXT.search(value):
                return _bad_text(value)
        elif isinstance(value, dict | list):
            if depth >= max_depth:
                return Rejection("nesting_too_deep",
                                 f"arrays/objects nested deeper than the limit of {max_depth}")
            if isinstance(value, dict):
                for key, item in value.items():
                    if _BAD_TEXT.search(key):
                        return _bad_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
    return None


def _bad_text(text: str) -> Rejection:
    found = _BAD_TEXT.search(text)
    char = found.group() if found else ""
    what = "a NUL character" if char == "\x00" else f"a lone surrogate U+{ord(char):04X}"
    return Rejection("invalid_text", f"a string holds {what}, which cannot be stored")


async def validate(
    topic: str, raw: bytes, directory: DeviceDirectory, received_at: datetime,
    max_payload: int, source: str = "mqtt",
    max_future: timedelta = MAX_FUTURE, max_past: timedelta = MAX_PAST, local_tz: tzinfo = UTC,
) -> CanonicalEvent | Rejection:
    """Check size, topic, device, JSON and schema; normalise units and time."""
    if len(raw) > max_payload:
        return Rejection("payload_too_large", f"{len(raw)} bytes > limit {max_payload}")
    parsed = parse_topic(topic)
    if parsed is None or parsed[2] not in CHANNELS:
        return Rejection(
            "bad_topic",
            f"topic {topic!r} is not {TOPIC_ROOT}/<community>/<device>/(event|status|alarm)",
        )
    community_id, device_id, channel = parsed
    device = await check_device(directory, device_id, community_id)
    if isinstance(device, Rejection):
        return device
    body = decode(raw)
    if isinstance(body, Rejection):
        return body
    event = to_event(device, body, channel, received_at, source, max_future, max_past, local_tz)
    if channel == ALARM_CHANNEL and isinstance(event, CanonicalEvent) \
            and event.type not in URGENT_TYPES:
        # The alarm channel is read ahead of everything else: only alarms may take it.
        return Rejection(
            "not_an_alarm",
            f"a {event.type!r} event on the alarm channel: only"
            f" {', '.join(sorted(URGENT_TYPES))} go there, the rest on .../event")
    return event
