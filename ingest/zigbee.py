"""Zigbee2MQTT -> device messages. Zigbee2MQTT publishes every sensor's state as JSON on
`zigbee2mqtt/<friendly_name>`, e.g. `{"occupancy": true, "battery": 97, "linkquality": 120}`;
one such message becomes one or more device messages of the mapped device.

Mapped: occupancy, contact, smoke, gas, water_leak, tamper, battery, linkquality, and a button's
`action` (an SOS button's "emergency", or any press of a button registered as an SOS button:
single, double, hold...). Its availability, `zigbee2mqtt/<friendly_name>/availability`
(`{"state": "offline"}`, or the legacy plain `offline`), becomes a status message, so a
device that drops off the mesh is noticed like one whose MQTT last will fired.
Property names: https://www.zigbee2mqtt.io/guide/usage/exposes.html and the device pages."""

from __future__ import annotations

import json
from datetime import datetime

from foundation.deadletter import Rejection

TOPIC_PREFIX = "zigbee2mqtt/"
SUBSCRIPTION = "zigbee2mqtt/+"
AVAILABILITY_SUBSCRIPTION = "zigbee2mqtt/+/availability"
_AVAILABILITY = "/availability"
_BOOLEANS = ("occupancy", "contact", "smoke", "gas", "water_leak", "tamper", "sos")
# Button actions that are a press of an SOS button (Heiman HS1EB, Tuya TS0215A_sos: "emergency";
# generic buttons used as SOS buttons: single, double, hold...). Releases are not presses.
SOS_ACTIONS = frozenset({"emergency", "sos", "single", "double", "triple", "hold", "long",
                         "press", "single_press", "long_press", "on"})


def parse_names(setting: str) -> dict[str, str]:
    """`name=device_id,name=device_id` (the `ingest_zigbee_devices` setting) -> a mapping."""
    names: dict[str, str] = {}
    for pair in setting.split(","):
        name, sep, device_id = pair.partition("=")
        if sep and name.strip() and device_id.strip():
            names[name.strip()] = device_id.strip()
    return names


def device_of(topic: str, names: dict[str, str]) -> str | None:
    """The device id behind `zigbee2mqtt/<friendly_name>`; an unmapped name is the device id."""
    if not topic.startswith(TOPIC_PREFIX):
        return None
    name = topic[len(TOPIC_PREFIX):].removesuffix(_AVAILABILITY)
    if not name or "/" in name or name == "bridge":
        return None
    return names.get(name, name)


def is_availability(topic: str) -> bool:
    """`zigbee2mqtt/<friendly_name>/availability`: online/offline, a status message."""
    return topic.startswith(TOPIC_PREFIX) and topic.endswith(_AVAILABILITY)


def availability(raw: bytes, received_at: datetime) -> dict[str, object] | Rejection:
    """The status message (the `devices.schemas.Status` form) of an availability message."""
    text = raw.strip()
    state: object = text.decode("utf-8", "replace")
    if text.startswith(b"{"):
        try:
            body = json.loads(text)
        except ValueError as exc:
            return Rejection("bad_json", f"availability: {exc}")
        state = body.get("state") if isinstance(body, dict) else None
    if state not in ("online", "offline"):
        return Rejection("schema_violation", "availability: state must be online or offline"
                                             f" (got {repr(state)[:60]})")
    ms = int(received_at.timestamp() * 1000)
    return {"msg_id": f"z2m-{ms}-availability", "ts": ms, "online": state == "online",
            "reason": "zigbee2mqtt_availability"}


def translate(body: object, received_at: datetime) -> list[dict[str, object]] | Rejection:
    """Device messages (the `devices.schemas` form) carried by one Zigbee2MQTT state message.

    Zigbee2MQTT gives no message id or device time: both come from the receive time.
    `contact: true` means the reed switch is closed, i.e. the door is shut."""
    if not isinstance(body, dict):
        return Rejection("schema_violation", "a zigbee2mqtt message is a JSON object")
    for key in _BOOLEANS:
        if key in body and not isinstance(body[key], bool):
            return Rejection("schema_violation", f"{key}: must be true or false "
                                                 f"(got {repr(body[key])[:60]})")
    ms = int(received_at.timestamp() * 1000)
    out: list[dict[str, object]] = []

    def add(kind: str, **fields: object) -> None:
        out.append({"msg_id": f"z2m-{ms}-{kind}", "ts": ms, "type": kind, **fields})

    action = body.get("action")
    if action is not None and not isinstance(action, str):
        return Rejection("schema_violation", f"action: must be text (got {repr(action)[:60]})")
    if action in SOS_ACTIONS or body.get("sos") is True:
        add("sos")
    if body.get("occupancy") is True:
        add("motion")
    if "contact" in body:
        add("door", open=not body["contact"])
    for alarm in ("smoke", "gas", "water_leak", "tamper"):
        if alarm in body:
            add(alarm, state=body[alarm])
    health: dict[str, object] = {}
    if isinstance(body.get("battery"), int | float):
        health["battery"] = round(body["battery"])
    elif "battery" in body:
        health["battery"] = body["battery"]  # let the schema reject it with the reason
    if "linkquality" in body:
        health["lqi"] = body["linkquality"]
    if health:
        add("heartbeat", **health)
    if not out:
        return Rejection(
            "zigbee_unmapped",
            "no action, occupancy, contact, smoke, gas, water_leak, tamper, battery or"
            " linkquality in the message",
        )
    return out
