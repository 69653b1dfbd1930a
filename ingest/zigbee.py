"""Zigbee2MQTT -> device messages. Zigbee2MQTT publishes every sensor's state as JSON on
`zigbee2mqtt/<friendly_name>`, e.g. `{"occupancy": true, "battery": 97, "linkquality": 120}`;
one such message becomes one or more device messages of the mapped device."""

from __future__ import annotations

from datetime import datetime

from ingest.validate import Rejection

TOPIC_PREFIX = "zigbee2mqtt/"
SUBSCRIPTION = "zigbee2mqtt/+"
_BOOLEANS = ("occupancy", "contact", "smoke", "gas")


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
    name = topic[len(TOPIC_PREFIX):]
    if not name or "/" in name or name == "bridge":
        return None
    return names.get(name, name)


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

    if body.get("occupancy") is True:
        add("motion")
    if "contact" in body:
        add("door", open=not body["contact"])
    for alarm in ("smoke", "gas"):
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
            "no occupancy, contact, smoke, gas, battery or linkquality in the message",
        )
    return out
