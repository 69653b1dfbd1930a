"""What the admin API and the ledger import accept: one pydantic model per registry record.

Validation errors name the field and say why, in the words a community staff member would use
to fix a ledger row."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from devices import phones
from devices.catalogue import DeviceKind
from devices.geo import gcj02_to_wgs84
from devices.provisioning import RESERVED_PREFIX
from devices.reasons import reason

CareLevel = Literal["self_care", "partly_dependent", "dependent"]
Language = Literal["zh-Hans", "en"]
Channel = Literal["voice", "sms"]
StaffRole = Literal["district_admin", "street_supervisor", "duty_staff"]

# Ids end up in MQTT topics and user names: no spaces, slashes, wildcards or colons.
RecordId = Annotated[str, StringConstraints(
    strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _e164(raw: str) -> str:
    return phones.e164(raw)


def _e164_or_empty(raw: str) -> str:
    return phones.e164(raw) if raw.strip() else ""


def _resident_id(raw: str) -> str:
    """A mainland resident ID: 18 characters whose last one is the ISO 7064 check digit."""
    text = raw.strip().upper()
    if not text:
        return ""
    if not re.fullmatch(r"\d{17}[\dX]", text):
        raise reason("id_number_format", "must be 18 characters: 17 digits then a digit or X")
    total = sum(int(c) * w for c, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != text[17]:
        raise reason("id_number_check_digit",
                     "check digit does not match (a digit was probably mistyped)")
    return text


Phone = Annotated[str, AfterValidator(_e164)]
OptionalPhone = Annotated[str, AfterValidator(_e164_or_empty)]
ResidentId = Annotated[str, AfterValidator(_resident_id)]


def mask_id_number(id_number: str) -> str:
    """Only the last four characters of an ID number are ever shown."""
    return "" if not id_number else "*" * (len(id_number) - 4) + id_number[-4:]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Patch(_In):
    """A partial update: a field left out keeps its value; a field sent as null is an error
    (the stored records have no empty state for it), never a database error."""

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise reason("null_not_allowed",
                         "must not be null: leave the field out to keep its value")
        return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise reason("unknown_time_zone",
                     "unknown time zone '{zone}' (an IANA name, e.g. Asia/Shanghai)",
                     zone=value) from None
    return value


# The community's own clock: duty rosters, message times, monthly statistics.
TimeZone = Annotated[str, AfterValidator(_time_zone)]


class CommunityIn(_In):
    id: RecordId
    name: Name
    district: Text = ""
    street: Text = ""
    emergency_line: OptionalPhone = ""
    time_zone: TimeZone = "Asia/Shanghai"


class CommunityPatch(_Patch):
    name: Name | None = None
    district: Text | None = None
    street: Text | None = None
    emergency_line: OptionalPhone | None = None
    time_zone: TimeZone | None = None


class ElderIn(_In):
    id: RecordId
    community_id: RecordId
    name: Name
    id_number: ResidentId = ""
    address: Text = ""
    phone: OptionalPhone = ""
    lives_alone: bool = False
    care_level: CareLevel = "self_care"
    language: Language = "zh-Hans"
    medical_notes: Annotated[str, StringConstraints(max_length=4000)] = ""


class ElderPatch(_Patch):
    community_id: RecordId | None = None
    name: Name | None = None
    id_number: ResidentId | None = None
    address: Text | None = None
    phone: OptionalPhone | None = None
    lives_alone: bool | None = None
    care_level: CareLevel | None = None
    language: Language | None = None
    medical_notes: Annotated[str, StringConstraints(max_length=4000)] | None = None


Crs = Literal["wgs84", "gcj02"]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class HomeLocation(_In):
    """The elder's home on the map. `radius_m` is how far from that point still counts as "at
    home" (the building and its yard); positions are stored as WGS-84."""

    lat: Latitude
    lon: Longitude
    crs: Crs = Field("wgs84", description="gcj02 when copied from a Chinese map app")
    radius_m: float = Field(100, ge=10, le=2000)


class HourWindow(_In):
    """Local times between which a safe zone is watched; `to` before `from` spans midnight."""

    from_: time = Field(alias="from")
    to: time


class SafeZone(_In):
    """Where the elder is expected to stay (电子围栏): a circle around home or a polygon of at
    least three points, watched during `hours` (all day when empty); a position outside it for
    `dwell_min` minutes raises `left_safe_zone`."""

    shape: Literal["circle", "polygon"] = "circle"
    radius_m: float | None = Field(None, ge=50, le=20_000, description="circle around home")
    polygon: list[tuple[Latitude, Longitude]] = Field(default_factory=list, max_length=200)
    crs: Crs = "wgs84"
    hours: list[HourWindow] = Field(default_factory=list, max_length=6)
    dwell_min: float = Field(10, ge=1, le=240)
    timezone: Annotated[str, StringConstraints(max_length=64)] = "Asia/Shanghai"

    @model_validator(mode="after")
    def _shape_complete(self) -> Self:
        if self.shape == "circle" and self.radius_m is None:
            raise reason("circle_needs_radius", "a circle needs radius_m (metres around home)")
        if self.shape == "polygon" and len(self.polygon) < 3:
            raise reason("polygon_needs_points",
                         "a polygon needs at least three [lat, lon] points")
        _time_zone(self.timezone)
        return self


class ElderLocation(_In):
    """Home and safe zone of one elder; a circle zone needs a home to be centred on."""

    home: HomeLocation | None = None
    safe_zone: SafeZone | None = None

    @model_validator(mode="after")
    def _circle_needs_home(self) -> Self:
        if self.safe_zone and self.safe_zone.shape == "circle" and self.home is None:
            raise reason("circle_needs_home",
                         "a circular safe zone is drawn around home: set home too")
        return self

    def stored(self) -> tuple[dict[str, object] | None, dict[str, object] | None]:
        """(home, safe_zone) as stored: WGS-84 everywhere."""
        home: dict[str, object] | None = None
        zone: dict[str, object] | None = None
        if self.home is not None:
            lat, lon = self.home.lat, self.home.lon
            if self.home.crs == "gcj02":
                lat, lon = gcj02_to_wgs84(lat, lon)
            home = {"lat": lat, "lon": lon, "radius_m": self.home.radius_m}
        if self.safe_zone is not None:
            z = self.safe_zone
            points = [gcj02_to_wgs84(a, b) if z.crs == "gcj02" else (a, b) for a, b in z.polygon]
            zone = {"shape": z.shape, "radius_m": z.radius_m,
                    "polygon": [list(p) for p in points], "dwell_min": z.dwell_min,
                    "hours": [[w.from_.strftime("%H:%M"), w.to.strftime("%H:%M")]
                              for w in z.hours], "timezone": z.timezone}
        return home, zone


class ElderThresholds(_In):
    """The elder's own detector limits, where the doctor or staff set them; anything left out
    uses the platform default (detectors/config.py)."""

    sbp_high: float | None = Field(None, ge=120, le=220, description="mmHg; default 180")
    sbp_low: float | None = Field(None, ge=70, le=120, description="mmHg; default 90")
    dbp_high: float | None = Field(None, ge=80, le=140, description="mmHg; default 120")
    glucose_low: float | None = Field(None, ge=3.0, le=6.0, description="mmol/L; default 3.9")
    glucose_severe: float | None = Field(None, ge=2.0, le=4.0, description="mmol/L; default 3.0")
    glucose_high: float | None = Field(None, ge=8.0, le=30.0, description="mmol/L; default 16.7")
    spo2_low: float | None = Field(None, ge=80, le=95, description="%; default 90")
    hr_low: float | None = Field(None, ge=30, le=60, description="bpm; default 40")
    hr_high: float | None = Field(None, ge=90, le=180, description="bpm; default 130")
    checkin_deadline_h: float | None = Field(
        None, ge=0, lt=24, description="local hour of the daily \"I'm OK\" deadline (enrols)")
    wake_h: float | None = Field(
        None, ge=4, le=14, description="usual local wake-up hour, e.g. 9.5 for a late sleeper")


class AwayPeriodIn(_In):
    starts_at: datetime
    ends_at: datetime | None = None
    reason: Text = ""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise reason("ends_before_start", "ends_at must be after starts_at")
        return self


class ContactIn(_In):
    priority: int = Field(ge=1, le=9, description="1 is called first")
    name: Name
    relation: Text = ""
    phone: Phone
    channels: list[Channel] | None = Field(
        None, validate_default=True,
        description="voice and/or sms; default: sms only when the number is a mobile")
    language: Language = "zh-Hans"
    can_sms: bool = Field(False, description="set from the number; any value sent is ignored")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        phone = info.data.get("phone")
        if phone is None:
            return value  # the phone's own error is reported
        can_sms = phones.parse(phone)[1]
        if value is None:
            return ["voice", "sms"] if can_sms else ["voice"]
        if "sms" in value and not can_sms:
            raise reason("fixed_line_no_sms",
                         "{phone} is a fixed line and cannot receive SMS: remove 'sms'",
                         phone=phone)
        if not value:
            raise reason("channels_empty", "at least one of voice, sms")
        return sorted(set(value), key=["voice", "sms"].index)

    @model_validator(mode="after")
    def _sms(self) -> Self:
        self.can_sms = phones.parse(self.phone)[1]
        return self


class ContactPatch(_Patch):
    priority: int | None = Field(None, ge=1, le=9)
    name: Name | None = None
    relation: Text | None = None
    phone: str | None = None
    channels: list[Channel] | None = None
    language: Language | None = None


def _device_id(raw: str) -> str:
    """A device id is also its broker login: never a platform service account's name."""
    if raw.lower().startswith(RESERVED_PREFIX):
        raise reason("device_id_reserved", "ids starting with '{prefix}' are reserved for the"
                     " platform's own service accounts: choose another id",
                     prefix=RESERVED_PREFIX)
    return raw


class DeviceIn(_In):
    id: Annotated[RecordId, AfterValidator(_device_id)]
    kind: DeviceKind
    elder_id: RecordId
    room: Text = ""
    serial: Text = ""
    model: Text = ""
    firmware: Text = ""
    heartbeat_interval_s: int | None = Field(
        None, ge=10, le=7 * 86400, description="default: the kind's interval")


class DevicePatch(_Patch):
    elder_id: RecordId | None = None
    room: Text | None = None
    serial: Text | None = None
    model: Text | None = None
    firmware: Text | None = None
    heartbeat_interval_s: int | None = Field(None, ge=10, le=7 * 86400)


class DutyShift(_In):
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    start: time
    end: time


class StaffIn(_In):
    id: RecordId
    name: Name
    phone: Phone
    role: StaffRole = "duty_staff"
    scope: Literal["community", "street"] = "community"
    community_id: RecordId | None = None
    street: Text = ""
    duty_roster: list[DutyShift] = []
    on_duty: bool = True

    @model_validator(mode="after")
    def _scoped(self) -> Self:
        if self.scope == "community" and not self.community_id:
            raise reason("staff_needs_community",
                         "community_id is required when scope is 'community'")
        if self.scope == "street" and not self.street:
            raise reason("staff_needs_street", "street is required when scope is 'street'")
        return self


class StaffPatch(_Patch):
    name: Name | None = None
    phone: Phone | None = None
    role: StaffRole | None = None
    duty_roster: list[DutyShift] | None = None
    on_duty: bool | None = None
