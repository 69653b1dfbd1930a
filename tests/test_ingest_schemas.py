"""Pure logic of ingest (no services): payload schemas per kind, range checks with readable
reasons, status/last-will events, Zigbee2MQTT translation, gateway signatures."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devices.catalogue import CATALOGUE, DeviceKind
from foundation.deadletter import Rejection
from ingest import gateway_auth, zigbee
from ingest.directory import DeviceInfo
from ingest.validate import to_event

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
TS = int(NOW.timestamp() * 1000)

# One example per kind: the README's "Device messages" section shows these same payloads.
EXAMPLES: dict[DeviceKind, list[dict[str, Any]]] = {
    DeviceKind.SOS_BUTTON: [{"msg_id": "b-1", "ts": TS, "type": "sos"},
                            {"msg_id": "b-2", "ts": TS, "type": "ok"}],
    DeviceKind.SMART_CANE: [
        {"msg_id": "c-1", "ts": TS, "type": "fall", "confidence": 0.92},
        {"msg_id": "c-2", "ts": TS, "type": "steps", "steps": 1834},
        {"msg_id": "c-3", "ts": TS, "type": "accel", "rate_hz": 50,
         "samples": [[0.01, -0.02, 0.98], [0.4, -2.9, 3.1], [0.0, 0.1, 0.2]]},
    ],
    DeviceKind.SMART_WATCH: [
        {"msg_id": "w-1", "ts": "2026-11-23T16:00:00+08:00", "type": "hr", "bpm": 72},
        {"msg_id": "w-2", "ts": TS, "type": "spo2", "percent": 96},
        {"msg_id": "w-3", "ts": TS / 1000, "type": "sos"},
    ],
    DeviceKind.SMOKE_ALARM: [{"msg_id": "s-1", "ts": TS, "type": "smoke", "state": True}],
    DeviceKind.GAS_ALARM: [{"msg_id": "g-1", "ts": TS, "type": "gas", "state": True}],
    DeviceKind.HEAT_ALARM: [{"msg_id": "h-1", "ts": TS, "type": "heat", "state": True,
                             "temperature_c": 68.5}],
    DeviceKind.BP_METER: [{"msg_id": "p-1", "ts": TS, "type": "bp", "systolic": 128,
                           "diastolic": 82, "pulse": 70}],
    DeviceKind.GLUCOSE_METER: [{"msg_id": "u-1", "ts": TS, "type": "glucose", "value": 108,
                                "unit": "mg/dL"}],
    DeviceKind.MOTION_SENSOR: [{"msg_id": "m-1", "ts": TS, "type": "motion"}],
    DeviceKind.DOOR_CONTACT: [{"msg_id": "d-1", "ts": TS, "type": "door", "open": True}],
    DeviceKind.WATER_LEAK_SENSOR: [{"msg_id": "l-1", "ts": TS, "type": "water_leak",
                                    "state": True}],
    DeviceKind.PRESSURE_MAT: [{"msg_id": "o-1", "ts": TS, "type": "occupancy",
                               "occupied": False}],
    DeviceKind.TOILET_FLUSH: [{"msg_id": "t-1", "ts": TS, "type": "flush"}],
    DeviceKind.SMART_PLUG: [{"msg_id": "k-1", "ts": TS, "type": "power", "watts": 1.9,
                             "unit": "kW"}],
    DeviceKind.WATER_FLOW: [{"msg_id": "q-1", "ts": TS, "type": "water", "flow": 0.36,
                             "unit": "m3/h"}],
    DeviceKind.CUPBOARD_CONTACT: [{"msg_id": "f-1", "ts": TS, "type": "contact",
                                   "open": True}],
}
HEARTBEAT = {"msg_id": "hb-1", "ts": TS, "type": "heartbeat", "battery": 87, "rssi": -71}


def device(kind: DeviceKind) -> DeviceInfo:
    return DeviceInfo(f"dev-{kind}", kind.value, "E-1", "c-1", "卧室")


def event(kind: DeviceKind, body: object, channel: str = "event") -> Any:
    return to_event(device(kind), body, channel, NOW, "mqtt",
                    timedelta(minutes=5), timedelta(days=7))


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_every_kind_has_an_accepted_example_and_a_heartbeat(kind: DeviceKind) -> None:
    for body in [*EXAMPLES[kind], HEARTBEAT]:
        ev = event(kind, json.loads(json.dumps(body)))
        assert not isinstance(ev, Rejection), ev
        assert ev.type == body["type"]
        assert ev.type in CATALOGUE[kind].message_types
        assert ev.event_id == f"dev-{kind}/{body['msg_id']}"


def test_glucose_mg_dl_is_converted_and_iso_time_is_utc() -> None:
    ev = event(DeviceKind.GLUCOSE_METER, EXAMPLES[DeviceKind.GLUCOSE_METER][0])
    assert ev.data == {"value": 5.99, "unit": "mmol/L", "original": {"value": 108.0,
                                                                       "unit": "mg/dL"}}
    hr = event(DeviceKind.SMART_WATCH, EXAMPLES[DeviceKind.SMART_WATCH][0])
    assert hr.event_time == NOW


@pytest.mark.parametrize(("kind", "body", "reason", "says"), [
    (DeviceKind.SMART_WATCH, {"type": "hr", "bpm": 400}, "out_of_range", "bpm"),
    (DeviceKind.SMART_WATCH, {"type": "spo2", "percent": 12}, "out_of_range", "percent"),
    (DeviceKind.BP_METER, {"type": "bp", "systolic": 80, "diastolic": 120}, "out_of_range",
     "above diastolic"),
    (DeviceKind.GLUCOSE_METER, {"type": "glucose", "value": 108}, "out_of_range",
     "wrong unit"),
    (DeviceKind.SMART_CANE, {"type": "accel", "rate_hz": 50, "samples": [[0, 0, 99]]},
     "out_of_range", "samples"),
    (DeviceKind.BP_METER, {"type": "bp", "systolic": "high", "diastolic": 80},
     "schema_violation", "systolic"),
    (DeviceKind.SMART_WATCH, {"type": "hr"}, "schema_violation", "bpm: Field required"),
    (DeviceKind.SMART_WATCH, {"type": "hr", "bpm": 70, "extra": 1}, "schema_violation", "extra"),
    (DeviceKind.BP_METER, {"type": "sos"}, "type_not_allowed", "bp_meter"),
    (DeviceKind.SMART_PLUG, {"type": "power", "watts": 9000}, "out_of_range", "watts"),
    (DeviceKind.SMART_PLUG, {"type": "power", "watts": 1800, "unit": "kW"}, "out_of_range",
     "household socket"),
    (DeviceKind.WATER_FLOW, {"type": "water", "flow": -1}, "out_of_range", "flow"),
    (DeviceKind.WATER_FLOW, {"type": "water", "flow": 6, "unit": "m3/h"}, "out_of_range",
     "household supply"),
    (DeviceKind.PRESSURE_MAT, {"type": "occupancy", "occupied": "maybe"}, "schema_violation",
     "occupied"),
    (DeviceKind.CUPBOARD_CONTACT, {"type": "door", "open": True}, "type_not_allowed",
     "cupboard_contact"),
])
def test_bad_readings_are_rejected_with_a_readable_reason(
    kind: DeviceKind, body: dict[str, Any], reason: str, says: str,
) -> None:
    got = event(kind, {"msg_id": "x", "ts": TS, **body})
    assert isinstance(got, Rejection)
    assert got.reason == reason
    assert says in got.detail


def test_plug_kilowatts_and_water_cubic_metres_are_converted() -> None:
    plug = event(DeviceKind.SMART_PLUG, EXAMPLES[DeviceKind.SMART_PLUG][0])
    assert plug.data == {"watts": 1900.0, "unit": "W",
                         "original": {"watts": 1.9, "unit": "kW"}}
    tap = event(DeviceKind.WATER_FLOW, EXAMPLES[DeviceKind.WATER_FLOW][0])
    assert tap.data == {"flow": 6.0, "unit": "L/min",
                        "original": {"flow": 0.36, "unit": "m3/h"}}


def test_future_device_clock_is_corrected_and_flagged() -> None:
    body = {"msg_id": "f", "ts": TS + 86_400_000, "type": "sos"}
    ev = event(DeviceKind.SOS_BUTTON, body)
    assert ev.event_time == NOW and ev.flags == ["clock_future"]


def test_iso_time_without_offset_is_the_devices_local_time() -> None:
    body = {"msg_id": "l", "ts": "2026-11-23T15:59:30", "type": "sos"}  # Beijing, UTC+8
    ev = to_event(device(DeviceKind.SOS_BUTTON), body, "event", NOW, "mqtt",
                  timedelta(minutes=5), timedelta(days=7), ZoneInfo("Asia/Shanghai"))
    assert ev.event_time == NOW - timedelta(seconds=30) and ev.flags == []
    aware = {"msg_id": "a", "ts": "2026-11-23T07:59:30Z", "type": "sos"}
    assert event(DeviceKind.SOS_BUTTON, aware).event_time == NOW - timedelta(seconds=30)


def test_a_last_will_becomes_an_offline_event() -> None:
    ev = event(DeviceKind.SMART_WATCH, {"online": False}, channel="status")
    assert ev.type == "offline"
    assert ev.data == {"online": False, "reason": "last_will"}
    assert ev.event_time == NOW
    online = event(DeviceKind.SMART_WATCH, {"online": True, "battery": 50, "ts": TS,
                                            "msg_id": "s1"}, channel="status")
    assert online.type == "online" and online.data == {"online": True, "battery": 50}
    hb = event(DeviceKind.SMART_WATCH, HEARTBEAT, channel="status")
    assert hb.type == "heartbeat"
    bad = event(DeviceKind.SMART_WATCH, {"online": "nope"}, channel="status")
    assert isinstance(bad, Rejection) and "online" in bad.detail


def test_zigbee2mqtt_state_becomes_device_messages() -> None:
    names = zigbee.parse_names("hall_pir=dev-pir, front_door = dev-door")
    assert zigbee.device_of("zigbee2mqtt/hall_pir", names) == "dev-pir"
    assert zigbee.device_of("zigbee2mqtt/dev-x", names) == "dev-x"
    assert zigbee.device_of("zigbee2mqtt/bridge", names) is None
    msgs = zigbee.translate({"occupancy": True, "battery": 97.4, "linkquality": 120,
                             "voltage": 3000}, NOW)
    assert not isinstance(msgs, Rejection)
    assert [m["type"] for m in msgs] == ["motion", "heartbeat"]
    assert msgs[1]["battery"] == 97 and msgs[1]["lqi"] == 120
    door = zigbee.translate({"contact": False}, NOW)
    assert not isinstance(door, Rejection) and door[0]["open"] is True
    smoke = zigbee.translate({"smoke": True, "battery": 80}, NOW)
    assert not isinstance(smoke, Rejection)
    assert smoke[0] == {"msg_id": f"z2m-{TS}-smoke", "ts": TS, "type": "smoke", "state": True}
    for ev_body in (msgs, door, smoke):
        for m in ev_body:
            kind = {"motion": DeviceKind.MOTION_SENSOR, "door": DeviceKind.DOOR_CONTACT,
                    "smoke": DeviceKind.SMOKE_ALARM, "heartbeat": DeviceKind.MOTION_SENSOR}
            assert not isinstance(event(kind[str(m["type"])], m), Rejection)
    assert isinstance(zigbee.translate({"occupancy": "yes"}, NOW), Rejection)
    nothing = zigbee.translate({"illuminance": 30}, NOW)
    assert isinstance(nothing, Rejection) and nothing.reason == "zigbee_unmapped"


def test_gateway_signature_and_api_key() -> None:
    keys = gateway_auth.parse_keys("acme=s3cret,other=x")
    body = b'{"items": []}'
    now = time.time()
    ts = str(int(now))
    sig = gateway_auth.signature(keys["acme"], ts, body)
    assert gateway_auth.check_signature("s3cret", ts, sig, body, now) is None
    assert "does not match" in str(gateway_auth.check_signature("s3cret", ts, sig, b"{}", now))
    assert "away" in str(gateway_auth.check_signature("s3cret", ts, sig, body, now + 3600))
    assert gateway_auth.check_signature("s3cret", None, sig, body, now) is not None
    assert gateway_auth.check_api_key("s3cret", "Bearer s3cret")
    assert not gateway_auth.check_api_key("s3cret", "Bearer nope")
    assert not gateway_auth.check_api_key("s3cret", None)


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_every_kind_may_report_tamper(kind: DeviceKind) -> None:
    """Issue 16: the schemas rejected `tamper`, so the tamper detector never saw one."""
    opened = event(kind, {"msg_id": "t-1", "ts": TS, "type": "tamper"})
    assert not isinstance(opened, Rejection) and opened.data.get("state", True) is True
    put_back = event(kind, {"msg_id": "t-2", "ts": TS, "type": "tamper", "state": False})
    assert not isinstance(put_back, Rejection)
    flagged = event(kind, {**HEARTBEAT, "tamper": True})
    assert not isinstance(flagged, Rejection) and flagged.data["tamper"] is True
    status = event(kind, {"online": True, "tamper": True}, channel="status")
    assert not isinstance(status, Rejection)
    bad = event(kind, {"msg_id": "t-3", "ts": TS, "type": "tamper", "state": "maybe"})
    assert isinstance(bad, Rejection) and "state" in bad.detail


def test_zigbee2mqtt_buttons_leaks_tamper_and_availability() -> None:
    sos = zigbee.translate({"action": "emergency", "battery": 90, "linkquality": 80}, NOW)
    assert not isinstance(sos, Rejection) and [m["type"] for m in sos] == ["sos", "heartbeat"]
    single = zigbee.translate({"action": "single"}, NOW)
    assert not isinstance(single, Rejection) and single[0]["type"] == "sos"
    released = zigbee.translate({"action": "", "linkquality": 80}, NOW)
    assert not isinstance(released, Rejection) and [m["type"] for m in released] == [
        "heartbeat"]
    assert isinstance(zigbee.translate({"action": 3}, NOW), Rejection)
    leak = zigbee.translate({"water_leak": True, "tamper": False, "battery": 70}, NOW)
    assert not isinstance(leak, Rejection)
    assert [(m["type"], m.get("state")) for m in leak] == [
        ("water_leak", True), ("tamper", False), ("heartbeat", None)]
    for m in leak:
        assert not isinstance(event(DeviceKind.WATER_LEAK_SENSOR, m), Rejection)
    assert not isinstance(event(DeviceKind.SOS_BUTTON, sos[0]), Rejection)
    assert isinstance(zigbee.translate({"water_leak": "wet"}, NOW), Rejection)

    topic = "zigbee2mqtt/kitchen_leak/availability"
    assert zigbee.is_availability(topic) and not zigbee.is_availability("zigbee2mqtt/x")
    assert zigbee.device_of(topic, {"kitchen_leak": "dev-leak"}) == "dev-leak"
    for raw in (b'{"state": "offline"}', b"offline"):
        status = zigbee.availability(raw, NOW)
        assert not isinstance(status, Rejection) and status["online"] is False
        ev = event(DeviceKind.WATER_LEAK_SENSOR, status, channel="status")
        assert not isinstance(ev, Rejection) and ev.type == "offline"
    online = zigbee.availability(b'{"state":"online"}', NOW)
    assert not isinstance(online, Rejection) and online["online"] is True
    for bad in (b'{"state": "gone"}', b"{not json", b"maybe"):
        assert isinstance(zigbee.availability(bad, NOW), Rejection)
