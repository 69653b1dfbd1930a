"""Readings rows of canonical events: the row of one event, and the COPY text of a batch (with
its hourly rollups and device sightings added up on the way)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from devices.readings.device_status import DeviceSightings
from devices.readings.rollups import HourlyRollups

COLUMNS = ("event_time", "device_id", "msg_id", "elder_id", "community_id", "type", "data",
           "received_at")


class NotClean(Exception):
    """A record the direct path does not take (not a plain canonical event)."""



def escaped(text: str) -> str:
    """A value in COPY text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") \
        .replace("\r", "\\r")


def direct_copy(values: Sequence[bytes], rollups: HourlyRollups, seen: DeviceSightings,
                 skip: frozenset[str] = frozenset()) -> str:
    """COPY text (`COLUMNS`) of canonical events, adding them to `rollups` (events of a type in
    `skip` only to `seen`); raises `NotClean` unless every one is a JSON object with text
    fields, a time and an object of data."""
    lines = []
    counts, fields, hour_of, saw = rollups.counts, rollups.fields, rollups.hour_of, seen.add
    loads, dumps = orjson.loads, orjson.dumps
    for raw in values:
        try:
            e = loads(raw)
            device_id, event_id, elder_id = e["device_id"], e["event_id"], e["elder_id"]
            community_id, kind, at = e["community_id"], e["type"], e["event_time"]
            received_at, data = e["received_at"], e["data"]
            if not (type(device_id) is str and type(event_id) is str and type(elder_id) is str
                    and type(community_id) is str and type(kind) is str and type(at) is str
                    and type(received_at) is str and type(data) is dict):
                raise NotClean
            saw(device_id, at, kind, data)
            if kind in skip:
                seen.status_only += 1
                continue
            hour = hour_of(at)
            encoded = dumps(data).decode()
        except (ValueError, KeyError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise NotClean from exc
        key = (hour, device_id, elder_id, kind)
        counts[key] = counts.get(key, 0) + 1
        for name, x in data.items():
            if type(x) is int or type(x) is float:
                fkey = (hour, device_id, elder_id, kind, name)
                a = fields.get(fkey)
                if a is None:
                    fields[fkey] = [1, x, x, x]
                else:
                    a[0] += 1
                    a[1] += x
                    if x < a[2]:
                        a[2] = x
                    elif x > a[3]:
                        a[3] = x
        prefix = device_id + "/"
        msg_id = event_id[len(prefix):] if event_id.startswith(prefix) else event_id
        line = (at, device_id, msg_id, elder_id, community_id, kind, encoded, received_at)
        # JSON without a backslash has no tab, newline, CR or backslash in its strings (raw
        # control characters are not JSON), and neither has `data` encoded again.
        lines.append("\t".join(line if b"\\" not in raw else map(escaped, line)))
    lines.append("")
    return "\n".join(lines)


def row_of(raw: bytes) -> tuple[Any, ...]:
    """The readings row of one canonical event as ingest wrote it (JSON)."""
    e = json.loads(raw)
    device_id = e["device_id"]
    prefix = device_id + "/"
    event_id: str = e["event_id"]
    msg_id = event_id[len(prefix):] if event_id.startswith(prefix) else event_id
    return (e["event_time"], device_id, msg_id, e["elder_id"], e["community_id"], e["type"],
            json.dumps(e["data"], ensure_ascii=False), e["received_at"])
