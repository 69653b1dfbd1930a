"""Units and clocks: everything on Kafka is SI-ish (mmol/L) and UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from devices.schemas import MG_DL_PER_MMOL_L, Glucose, Power, WaterFlow, _Message

__all__ = ["MG_DL_PER_MMOL_L", "data_of", "event_time", "to_utc"]
MAX_FUTURE = timedelta(minutes=5)
MAX_PAST = timedelta(days=7)


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


def data_of(msg: _Message) -> dict[str, object]:
    """The message's readings without the envelope, in canonical units."""
    data = msg.model_dump(exclude={"msg_id", "ts", "type"}, exclude_none=True, mode="json")
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
