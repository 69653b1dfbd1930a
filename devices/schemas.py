"""Payload schemas: what a device publishes.

Topics (see the README's "Device messages" section for one example per kind):
- `eldercare/v1/{community}/{device_id}/event`: readings and button presses, one of the
  `DeviceMessage` schemas below, selected by `type`.
- `eldercare/v1/{community}/{device_id}/status`: `Status` (online/offline, battery, signal);
  devices set their MQTT last will to a retained `{"online": false}` here.

Every event carries a `msg_id` unique per device (for de-duplication), a timestamp `ts`
(epoch seconds, epoch milliseconds or ISO 8601) and a `type`. The ranges are physical limits:
a value outside them is a broken sensor or a wrong unit, and is rejected with the reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

Timestamp = float | int | datetime
MsgId = Annotated[str, Field(min_length=1, max_length=64)]
Battery = Annotated[int, Field(ge=0, le=100, description="battery charge, percent")]
Rssi = Annotated[int, Field(ge=-150, le=0, description="received signal strength, dBm")]
Lqi = Annotated[int, Field(ge=0, le=255, description="Zigbee link quality (0-255)")]
G = Annotated[float, Field(ge=-32, le=32)]  # accelerometers saturate at +-16 g; 32 is generous

# Glucose limits in mmol/L; meters read "LO" below ~0.6 and "HI" above ~33.3.
GLUCOSE_MMOL_MIN, GLUCOSE_MMOL_MAX = 0.5, 40.0
MG_DL_PER_MMOL_L = 18.016  # glucose molar mass 180.16 g/mol


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    msg_id: MsgId
    ts: Timestamp


# The widest error a position may have and still help anyone find the elder: a cell-tower fix
# in the countryside is a few km; beyond 10 km it points at the wrong town.
MAX_ACCURACY_M = 10_000


class Location(BaseModel):
    """Where a watch or cane is: a fix from satellites (`gnss`), Wi-Fi or the cell network, in
    WGS-84 (GNSS) or GCJ-02 (Chinese location services). `ts` is when the fix was taken, if it
    differs from the message's time (a watch sends its last fix with an SOS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    accuracy_m: Annotated[float, Field(gt=0, le=MAX_ACCURACY_M)]
    source: Literal["gnss", "wifi", "cell"]
    crs: Literal["wgs84", "gcj02"] = "wgs84"
    ts: Timestamp | None = None


class Heartbeat(_Message):
    """"I am alive", with how the device is doing; every kind sends it. `tamper` is true while
    the casing is open or the device is off its mount."""

    type: Literal["heartbeat"]
    tamper: bool | None = None
    battery: Battery | None = None
    rssi: Rssi | None = None
    lqi: Lqi | None = None
    firmware: Annotated[str, Field(max_length=32)] | None = None


class Sos(_Message):
    type: Literal["sos"]
    location: Location | None = None


class ImOk(_Message):
    """The "I'm OK" / daily check-in press."""

    type: Literal["ok"]


class Fall(_Message):
    """The device's own fall flag."""

    type: Literal["fall"]
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    location: Location | None = None


class LocationReport(_Message):
    """A periodic position report from a watch or cane."""

    type: Literal["location"]
    location: Location


class Steps(_Message):
    type: Literal["steps"]
    steps: Annotated[int, Field(ge=0, le=100_000)]


class Accel(_Message):
    """A window of accelerometer samples in g, as [x, y, z] triples."""

    type: Literal["accel"]
    rate_hz: Annotated[float, Field(gt=0, le=400)]
    samples: Annotated[list[tuple[G, G, G]], Field(min_length=1, max_length=4000)]


class HeartRate(_Message):
    type: Literal["hr"]
    bpm: Annotated[float, Field(ge=20, le=250)]


class SpO2(_Message):
    type: Literal["spo2"]
    percent: Annotated[float, Field(ge=50, le=100)]


class Alarm(_Message):
    """Smoke, gas or heat alarm: `state` is true when the alarm sounds, false when it clears."""

    type: Literal["smoke", "gas", "heat"]
    state: bool = True
    temperature_c: Annotated[float, Field(ge=-40, le=150)] | None = None


class Tamper(_Message):
    """The casing was opened or the device taken off its mount (true), or put back (false)."""

    type: Literal["tamper"]
    state: bool = True


class WaterLeak(_Message):
    """A water leak sensor: `state` is true while it is wet."""

    type: Literal["water_leak"]
    state: bool = True


class BloodPressure(_Message):
    type: Literal["bp"]
    systolic: Annotated[float, Field(ge=50, le=280)]
    diastolic: Annotated[float, Field(ge=25, le=180)]
    pulse: Annotated[float, Field(ge=20, le=250)] | None = None

    @model_validator(mode="after")
    def _systolic_above_diastolic(self) -> BloodPressure:
        if self.systolic <= self.diastolic:
            raise ValueError(
                f"systolic {self.systolic} must be above diastolic {self.diastolic}"
            )
        return self


class Glucose(_Message):
    type: Literal["glucose"]
    value: Annotated[float, Field(gt=0, le=1000)]
    unit: Literal["mmol/L", "mg/dL"] = "mmol/L"

    @model_validator(mode="after")
    def _physical_range(self) -> Glucose:
        mmol = self.value / MG_DL_PER_MMOL_L if self.unit == "mg/dL" else self.value
        if not GLUCOSE_MMOL_MIN <= mmol <= GLUCOSE_MMOL_MAX:
            raise ValueError(
                f"glucose {self.value} {self.unit} is outside {GLUCOSE_MMOL_MIN}-"
                f"{GLUCOSE_MMOL_MAX} mmol/L (a wrong unit?)"
            )
        return self


class Motion(_Message):
    type: Literal["motion"]


class Door(_Message):
    type: Literal["door"]
    open: bool


class Occupancy(_Message):
    """A pressure mat under a mattress or a chair cushion: `occupied` when someone lies or sits
    on it; sent on every change."""

    type: Literal["occupancy"]
    occupied: bool


class Flush(_Message):
    """A toilet was flushed."""

    type: Literal["flush"]


class Power(_Message):
    """A smart plug's appliance power draw (sent on change and periodically)."""

    type: Literal["power"]
    watts: Annotated[float, Field(ge=0, le=4000)]  # a 16 A socket at 230 V is ~3.7 kW
    unit: Literal["W", "kW"] = "W"

    @model_validator(mode="after")
    def _physical_range(self) -> Power:
        if self.unit == "kW" and self.watts > 4:
            raise ValueError(f"power {self.watts} kW is beyond a household socket (4 kW)")
        return self


class WaterFlow(_Message):
    """Water running through a tap or shower supply, litres per minute (0 when it stops)."""

    type: Literal["water"]
    flow: Annotated[float, Field(ge=0, le=60)]  # a household tap runs at most ~20 L/min
    unit: Literal["L/min", "m3/h"] = "L/min"

    @model_validator(mode="after")
    def _physical_range(self) -> WaterFlow:
        if self.unit == "m3/h" and self.flow > 3.6:
            raise ValueError(f"flow {self.flow} m3/h is beyond a household supply (3.6 m3/h)")
        return self


class Contact(_Message):
    """A reed switch on a cupboard, drawer or fridge door: `open` or shut."""

    type: Literal["contact"]
    open: bool


DeviceMessage = Annotated[
    Heartbeat | Sos | ImOk | Fall | Steps | Accel | HeartRate | SpO2 | Alarm | BloodPressure
    | Glucose | Motion | Door | LocationReport | Tamper | WaterLeak | Occupancy | Flush | Power
    | WaterFlow | Contact,
    Field(discriminator="type"),
]

DEVICE_MESSAGE: TypeAdapter[DeviceMessage] = TypeAdapter(DeviceMessage)


class Status(BaseModel):
    """A message on the status topic. A last will is just `{"online": false}`: no id, no time,
    because it is written when the device connects and published by the broker later."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    online: bool
    msg_id: MsgId | None = None
    ts: Timestamp | None = None
    reason: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    battery: Battery | None = None
    rssi: Rssi | None = None
    lqi: Lqi | None = None
    firmware: Annotated[str, Field(max_length=32)] | None = None
    tamper: bool | None = None
