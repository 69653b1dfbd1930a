"""Payload schemas: what a device publishes on eldercare/v1/{community}/{device_id}/event.

Every message carries a `msg_id` unique per device (for de-duplication), a timestamp `ts`
(epoch seconds, epoch milliseconds or ISO 8601) and a `type` that selects the schema below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Timestamp = float | int | datetime


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    msg_id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: Timestamp


class Heartbeat(_Message):
    type: Literal["heartbeat"]
    battery: Annotated[int, Field(ge=0, le=100)] | None = None
    rssi: Annotated[int, Field(ge=-150, le=0)] | None = None
    firmware: Annotated[str, Field(max_length=32)] | None = None


class Sos(_Message):
    type: Literal["sos"]


class ImOk(_Message):
    """The "I'm OK" / daily check-in press."""

    type: Literal["ok"]


class Fall(_Message):
    """The device's own fall flag."""

    type: Literal["fall"]
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None


class Steps(_Message):
    type: Literal["steps"]
    steps: Annotated[int, Field(ge=0, le=100_000)]


class Accel(_Message):
    """A window of accelerometer samples in g, as [x, y, z] triples."""

    type: Literal["accel"]
    rate_hz: Annotated[float, Field(gt=0, le=400)]
    samples: Annotated[list[tuple[float, float, float]], Field(min_length=1, max_length=4000)]


class HeartRate(_Message):
    type: Literal["hr"]
    bpm: Annotated[float, Field(ge=0, le=300)]


class SpO2(_Message):
    type: Literal["spo2"]
    percent: Annotated[float, Field(ge=0, le=100)]


class Alarm(_Message):
    """Smoke, gas or heat alarm: `state` is true when the alarm sounds, false when it clears."""

    type: Literal["smoke", "gas", "heat"]
    state: bool = True
    temperature_c: Annotated[float, Field(ge=-40, le=150)] | None = None


class BloodPressure(_Message):
    type: Literal["bp"]
    systolic: Annotated[float, Field(ge=40, le=300)]
    diastolic: Annotated[float, Field(ge=20, le=200)]
    pulse: Annotated[float, Field(ge=20, le=250)] | None = None


class Glucose(_Message):
    type: Literal["glucose"]
    value: Annotated[float, Field(gt=0, le=1000)]
    unit: Literal["mmol/L", "mg/dL"] = "mmol/L"


class Motion(_Message):
    type: Literal["motion"]


class Door(_Message):
    type: Literal["door"]
    open: bool


DeviceMessage = Annotated[
    Heartbeat | Sos | ImOk | Fall | Steps | Accel | HeartRate | SpO2 | Alarm | BloodPressure
    | Glucose | Motion | Door,
    Field(discriminator="type"),
]

DEVICE_MESSAGE: TypeAdapter[DeviceMessage] = TypeAdapter(DeviceMessage)
