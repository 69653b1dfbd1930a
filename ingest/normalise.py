"""Units and clocks: everything on Kafka is SI-ish (mmol/L) and UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from devices.geo import gcj02_to_wgs84
from devices.schemas import MG_DL_PER_MMOL_L, Glucose, Location, Power, WaterFlow, _Message

__all__ = ["MG_DL_PER_MMOL_L", "data_of", "event_time", "location_of", "to_utc"]
MAX_FUTURE = timedelta(minutes=5)
MAX_PAST = timedelta(days=7)
# A fix older than this when the message was sent is "where the elder was", not "is": kept,
# flagged `location_stale`, and worded as the last known position.
MAX_FIX_AGE = timedelta(minutes=10)


def to_utc(ts: float | int | datetime, local_tz: tzinfo = UTC) -> datetime:
    """Epoch seconds, epoch milliseconds (> 1e11) or an ISO 8601 datetime, as aware UTC. An ISO
    time without an offset is the devices' local time `local_tz` (cheap devices send that)."""
    if isinstance(ts, datetime):
        return (ts.replace(tzinfo=local_tz) if ts.tzinfo is None else ts).astimezone(UTC)
    seconds = ts / 1000.0 if ts > 1e11 else float(ts)
    return datetime.fromtimestamp(seconds, UTC)


def event_time(
    ts: float | int | datetime, received_at: datetime,
    max_future: timedelta = MAX_FUTURE, max_past: timedelta = MAX_PAST, local_tz: tzinfo = UTC,
) -> tuple[datetime, list[str]]:
    """The device's time, unless its clock is clearly wrong: then the receive time, flagged."""
    try:
        t = to_utc(ts, local_tz)
    except (OverflowError, OSError, ValueError):
        return received_at, ["clock_invalid"]
    if t - received_at > max_future:
        return received_at, ["clock_future"]
    if received_at - t > max_past:
        return received_at, ["clock_past"]
    return t, []


def location_of(loc: Location, when: datetime, local_tz: tzinfo = UTC
                ) -> tuple[dict[str, object], list[str]]:
    """A position in canonical form (WGS-84, with when the fix was taken) and its flags."""
    lat, lon = (loc.lat, loc.lon) if loc.crs == "wgs84" else gcj02_to_wgs84(loc.lat, loc.lon)
    out: dict[str, object] = {"lat": round(lat, 7), "lon": round(lon, 7),
                              "accuracy_m": loc.accuracy_m, "source": loc.source}
    if loc.crs != "wgs84":
        out["reported"] = {"crs": loc.crs, "lat": loc.lat, "lon": loc.lon}
    fix = when
    if loc.ts is not None:
        try:
            fix = to_utc(loc.ts, local_tz)
        except (OverflowError, OSError, ValueError):
            return out | {"fix_time": when.isoformat()}, ["location_time_invalid"]
    out["fix_time"] = fix.isoformat()
    flags = ["location_stale"] if when - fix > MAX_FIX_AGE else []
    if fix - when > MAX_FUTURE:
        flags.append("location_time_future")
    return out, flags


def data_of(msg: _Message, when: datetime | None = None, local_tz: tzinfo = UTC
            ) -> dict[str, object]:
    """The message's readings without the envelope, in canonical units; a position becomes
    WGS-84 with its fix time (`location_of`) when the event time `when` is given."""
    data = msg.model_dump(exclude={"msg_id", "ts", "type", "location"}, exclude_none=True,
                          mode="json")
    loc = getattr(msg, "location", None)
    if isinstance(loc, Location):
        data["location"], flags = location_of(loc, when or to_utc(msg.ts, local_tz), local_tz)
        if flags:
            data["location_flags"] = flags
    if isinstance(msg, Glucose) and msg.unit == "mg/dL":
        data["value"] = round(msg.value / MG_DL_PER_MMOL_L, 2)
        data["unit"] = "mmol/L"
        data["original"] = {"value": msg.value, "unit": "mg/dL"}
    elif isinstance(msg, Power) and msg.unit == "kW":
        data.update(watts=round(msg.watts * 1000, 1), unit="W",
                    original={"watts": msg.watts, "unit": "kW"})
    elif isinstance(msg, WaterFlow) and msg.unit == "m3/h":
        data.update(flow=round(msg.flow * 1000 / 60, 2), unit="L/min",
                    original={"flow": msg.flow, "unit": "m3/h"})
    return data
