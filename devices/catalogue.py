"""The device kinds the platform knows, and which messages each may send."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeviceKind(StrEnum):
    SOS_BUTTON = "sos_button"
    SMART_CANE = "smart_cane"
    SMART_WATCH = "smart_watch"
    SMOKE_ALARM = "smoke_alarm"
    GAS_ALARM = "gas_alarm"
    HEAT_ALARM = "heat_alarm"
    BP_METER = "bp_meter"
    GLUCOSE_METER = "glucose_meter"
    MOTION_SENSOR = "motion_sensor"
    DOOR_CONTACT = "door_contact"
    WATER_LEAK_SENSOR = "water_leak_sensor"
    # Kinds real home kits have beyond motion and the front door (added for inactivity).
    PRESSURE_MAT = "pressure_mat"          # bed or chair occupancy
    TOILET_FLUSH = "toilet_flush"
    SMART_PLUG = "smart_plug"              # appliance power (kettle, television, microwave)
    WATER_FLOW = "water_flow"              # a flow sensor on the tap or shower supply
    CUPBOARD_CONTACT = "cupboard_contact"  # a reed switch on a cupboard, drawer or fridge


# Canonical event types made from the status topic (heartbeats there become "heartbeat").
# "offline" comes from a device's MQTT last will: data={"online": false, "reason": "last_will"}.
STATUS_TYPES = frozenset({"online", "offline"})


@dataclass(frozen=True)
class KindSpec:
    """What one kind of device sends, and how often it says it is alive."""

    kind: DeviceKind
    message_types: frozenset[str]
    heartbeat_interval_s: int
    counts_as_activity: frozenset[str]
    # How much one activity message says "someone is up" (the routine's weight): 1 for a
    # person's own act (movement, a door, getting out of bed, a flush); below 1 for what a
    # machine may also do by itself (a plug's standby draw, a cistern refilling), so that two
    # such messages are needed before silence is broken.
    activity_weight: float = 1.0


def _spec(kind: DeviceKind, types: set[str], hb: int, activity: set[str],
          weight: float = 1.0) -> KindSpec:
    # Every device may say it is alive, and that its casing was opened or it was taken down.
    return KindSpec(kind, frozenset(types | {"heartbeat", "tamper"}), hb, frozenset(activity),
                    weight)


CATALOGUE: dict[DeviceKind, KindSpec] = {
    s.kind: s
    for s in (
        _spec(DeviceKind.SOS_BUTTON, {"sos", "ok"}, 3600, {"sos", "ok"}),
        _spec(DeviceKind.SMART_CANE, {"sos", "fall", "steps", "accel", "ok", "location"}, 600,
              {"sos", "steps", "ok"}),
        _spec(DeviceKind.SMART_WATCH,
              {"sos", "fall", "steps", "accel", "hr", "spo2", "ok", "location"}, 600,
              {"sos", "steps", "ok"}),
        _spec(DeviceKind.SMOKE_ALARM, {"smoke"}, 3600, set()),
        _spec(DeviceKind.GAS_ALARM, {"gas"}, 3600, set()),
        _spec(DeviceKind.HEAT_ALARM, {"heat"}, 3600, set()),
        _spec(DeviceKind.BP_METER, {"bp"}, 86400, {"bp"}),
        _spec(DeviceKind.GLUCOSE_METER, {"glucose"}, 86400, {"glucose"}),
        _spec(DeviceKind.MOTION_SENSOR, {"motion"}, 1800, {"motion"}),
        _spec(DeviceKind.DOOR_CONTACT, {"door"}, 1800, {"door"}),
        _spec(DeviceKind.WATER_LEAK_SENSOR, {"water_leak"}, 3600, set()),
        _spec(DeviceKind.PRESSURE_MAT, {"occupancy"}, 3600, {"occupancy"}),
        _spec(DeviceKind.TOILET_FLUSH, {"flush"}, 3600, {"flush"}),
        _spec(DeviceKind.SMART_PLUG, {"power"}, 3600, {"power"}, 0.5),
        _spec(DeviceKind.WATER_FLOW, {"water"}, 3600, {"water"}, 0.5),
        _spec(DeviceKind.CUPBOARD_CONTACT, {"contact"}, 3600, {"contact"}),
    )
}
