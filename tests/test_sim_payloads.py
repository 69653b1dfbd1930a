"""Everything the simulator publishes is what ingest accepts: every device kind's messages, a
scenario's whole timeline with every injection, and the status/last-will payloads."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.catalogue import CATALOGUE, DeviceKind
from devices.registry import save
from devices.schemas import DEVICE_MESSAGE, Status
from foundation.config import Settings
from foundation.deadletter import Rejection
from foundation.mqtt import MqttTarget
from ingest.directory import DeviceDirectory
from ingest.validate import validate
from simulators import payloads, population
from simulators.clock import start_in_past
from simulators.devices import VirtualDevice, shared_credentials, status_topic
from simulators.scenario import Scenario, compile_timeline

EVERYTHING = Scenario.model_validate({
    "name": "every injection", "start": "06:00", "duration": "1d", "seed": 5,
    "population": {"extra_elders": 1, "elders": [{"key": "a", "checkin": "09:00"}]},
    "inject": [
        {"at": "1h", "elder": "a", "event": "sos"},
        {"at": "2h", "elder": "a", "event": "fall", "gets_up_after": "2m"},
        {"at": "3h", "elder": "a", "event": "dropped_cane"},
        {"at": "4h", "elder": "a", "event": "smoke", "clears_after": "8s"},
        {"at": "4h10m", "elder": "a", "event": "gas"},
        {"at": "4h20m", "elder": "a", "event": "heat", "temperature_c": 80},
        {"at": "5h", "elder": "a", "event": "vital", "bp": [196, 124], "glucose": 2.6,
         "spo2": 85, "hr": 150, "repeat": 2},
        {"at": "6h", "elder": "a", "event": "stops_moving", "for": "2h"},
        {"at": "9h", "elder": "a", "event": "away", "for": "3h"},
        {"at": "13h", "elder": "x1", "event": "battery_dies", "device": "watch"},
        {"at": "14h", "elder": "x1", "event": "gateway_offline", "for": "1h"},
        {"at": "20h", "elder": "a", "event": "skip_checkin"},
        {"at": "21h", "elder": "a", "event": "tamper"},
        {"at": "22h", "elder": "a", "event": "water_leak", "clears_after": "10m"},
    ],
})


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_every_message_type_of_every_kind_matches_its_schema(kind: DeviceKind) -> None:
    examples = payloads.examples(kind)
    assert {e["type"] for e in examples} == CATALOGUE[kind].message_types
    for body in examples:
        msg = DEVICE_MESSAGE.validate_python({"msg_id": "m1", "ts": time.time(), **body})
        assert msg.type == body["type"]


def test_a_scenario_timeline_with_every_injection_is_valid() -> None:
    _, sims = population.build("p", [population.ElderSpec("a", checkin="09:00")],
                               extra_elders=1, seed=5)
    steps = compile_timeline(EVERYTHING, sims, start_in_past("06:00", 86400))
    kinds = {str(d.kind) for s in sims for d in s.elder.devices}
    assert kinds == {k.value for k in DeviceKind}
    published = [s for s in steps if s.action == "publish"]
    assert {s.body["type"] for s in published} >= {
        "sos", "fall", "accel", "steps", "smoke", "gas", "heat", "bp", "glucose", "spo2", "hr",
        "motion", "door", "ok", "heartbeat"}
    assert {s.action for s in steps} == {"publish", "drop", "reconnect"}
    for s in published:
        msg = DEVICE_MESSAGE.validate_python({"msg_id": "m", "ts": s.t, **s.body})
        assert msg.type in CATALOGUE[DeviceKind(s.device.kind)].message_types, s


def test_status_and_last_will_payloads_match_the_status_schema() -> None:
    Status.model_validate({"online": False})  # the will (see VirtualDevice.connect)
    Status.model_validate({"online": True, "msg_id": "n-1", "ts": time.time()})


async def test_ingest_accepts_the_simulators_bytes_for_every_kind(infra: Settings) -> None:
    communities, sims = population.build(f"v{int(time.time() * 1000) % 10**8}", [
        population.ElderSpec("a", checkin="09:00")], extra_elders=1, seed=5)
    save(infra.database_url, communities)
    by_id = {d.id: d for s in sims for d in s.elder.devices}
    start = start_in_past("06:00", 86400)
    steps = [s for s in compile_timeline(EVERYTHING, sims, start) if s.action == "publish"]
    directory = DeviceDirectory(infra.database_url)
    target = MqttTarget.parse(infra.mqtt_url)
    devices = {i: VirtualDevice(target, s.device, shared_credentials(infra.mqtt_url))
               for s in steps for i in [s.device.device_id]}
    now = datetime.now(UTC)
    seen_kinds = set()
    try:
        for s in steps:
            raw = devices[s.device.device_id].encode(s.body, s.t)
            topic = f"eldercare/v1/{s.device.community_id}/{s.device.device_id}/event"
            result = await validate(topic, raw, directory, now, infra.mqtt_max_payload,
                                    max_past=timedelta(days=3))
            assert not isinstance(result, Rejection), (result, raw[:200])
            assert result.flags == [], (result.flags, s)  # the simulated clock is in the window
            assert result.device_kind == by_id[s.device.device_id].kind
            seen_kinds.add(result.device_kind)
        will = json.dumps({"online": False}).encode()
        ref = steps[0].device
        result = await validate(status_topic(ref.community_id, ref.device_id), will, directory,
                                now, infra.mqtt_max_payload)
        assert not isinstance(result, Rejection), result
        assert result.type == "offline"
    finally:
        await directory.close()
    assert seen_kinds == {k.value for k in DeviceKind}


def test_scenario_files_all_load() -> None:
    from simulators.scenario import load

    files = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml"))
    assert len(files) >= 12
    for f in files:
        sc = load(f)
        assert sc.expect, f
