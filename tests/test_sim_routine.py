"""Pure logic of the simulator: seeded routines, injections, the simulated clock, CSV windows."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import pytest

from devices.schemas import DEVICE_MESSAGE
from simulators import accel, population, recording, routine
from simulators.clock import LOCAL, SimClock, parse_duration, start_in_past
from simulators.scenario import Scenario, compile_timeline
from simulators.timeline import Timeline


def _life(seed: int, days: float = 2.0) -> list[tuple[float, str, str]]:
    _, sims = population.build("r", [population.ElderSpec("a", wake="06:30")], seed=seed)
    start = start_in_past("00:00", days * 86400)
    tl = Timeline()
    routine.add_life(tl, sims[0], start, start + days * 86400, seed)
    return [(s.t - start, s.device.device_id, s.body["type"]) for s in tl.ordered()]


def test_the_same_seed_gives_the_same_life_and_another_seed_another() -> None:
    assert _life(3) == _life(3)
    assert _life(3) != _life(4)


def test_a_day_has_the_shape_of_a_day() -> None:
    steps = _life(7, days=1)
    assert min(t for t, d, ty in steps if d.endswith("-bp")) > 6 * 3600  # morning BP after wake
    assert any(d.endswith("-cane") and ty == "steps" for _, d, ty in steps)  # a walk
    assert any(d.endswith("-door") for _, d, _ in steps)
    daytime = [t for t, d, _ in steps if d.endswith("-pir-living")]
    assert min(daytime) > 5 * 3600 and max(daytime) < 23.5 * 3600
    # Nights are quiet: a bathroom trip or two (movement, and its flush and tap).
    assert len([t for t, _, ty in steps if t < 5 * 3600 and ty == "motion"]) < 8
    night = {ty for t, _, ty in steps if t < 5 * 3600}
    assert night <= {"motion", "occupancy", "flush", "water", "heartbeat"}, night


def test_heartbeats_follow_each_kind_interval_and_batteries_drain() -> None:
    _, sims = population.build("h", [population.ElderSpec("a")], seed=1)
    start = start_in_past("00:00", 3 * 86400)
    tl = Timeline()
    routine.add_heartbeats(tl, sims[0], start, start + 3 * 86400, 1)
    cane = [s for s in tl.ordered() if s.device.device_id.endswith("-cane")]
    assert len(cane) == 3 * 86400 // 600
    assert cane[0].body["battery"] > cane[-1].body["battery"] >= 25


def _scenario(**inject: object) -> tuple[list, float]:  # type: ignore[type-arg]
    sc = Scenario.model_validate({
        "name": "t", "start": "00:00", "duration": "1d", "seed": 2,
        "population": {"elders": [{"key": "a"}]}, "inject": [{"elder": "a", **inject}]})
    _, sims = population.build("s", sc.population.elder_specs(), seed=2)
    start = start_in_past("00:00", 86400)
    return compile_timeline(sc, sims, start), start


def test_stops_moving_silences_activity_but_not_heartbeats() -> None:
    steps, start = _scenario(at="10h", event="stops_moving")
    after = [s for s in steps if s.t >= start + 10 * 3600]
    assert after and all(s.body.get("type") == "heartbeat" for s in after)


def test_battery_dies_then_the_device_vanishes() -> None:
    steps, start = _scenario(at="10h", event="battery_dies", device="cane")
    cane = [s for s in steps if s.device.device_id.endswith("-cane") and s.t >= start + 36000]
    levels = [s.body["battery"] for s in cane if s.action == "publish"]
    assert levels == [15, 9, 4, 1]
    assert cane[-1].action == "drop"


def test_a_fall_sends_the_impact_window_and_the_flag_then_stillness() -> None:
    steps, start = _scenario(at="11h", event="fall", mode="both")
    at = [s for s in steps if s.t >= start + 11 * 3600 and s.body.get("type") != "heartbeat"]
    assert [s.body["type"] for s in at[:4]] == ["accel", "fall", "accel", "accel"]
    window = at[0].body["samples"]
    peak = max((x * x + y * y + z * z) ** 0.5 for x, y, z in window)
    assert peak > 3.0
    DEVICE_MESSAGE.validate_python({"msg_id": "m", "ts": time.time(), **at[0].body})


def test_parse_duration() -> None:
    assert parse_duration("1d2h3m4s") == 86400 + 7200 + 180 + 4
    assert parse_duration(90) == 90
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_the_simulated_span_ends_in_the_past_at_the_given_local_time() -> None:
    now = time.time()
    start = start_in_past("07:30", 4 * 3600, now)
    assert start + 4 * 3600 <= now < start + 4 * 3600 + 86400
    local = datetime.fromtimestamp(start, LOCAL)
    assert (local.hour, local.minute) == (7, 30)


async def test_the_clock_runs_at_its_speed() -> None:
    clock = SimClock(1_000_000.0, speed=1000)
    await clock.sleep_until(1_000_050.0)
    assert clock.now() >= 1_000_050.0
    assert clock.now() - 1_000_000.0 < 50 + 1000 * 0.5  # well under half a second late
    await asyncio.sleep(0)


def test_a_csv_of_samples_becomes_accelerometer_windows(tmp_path: Path) -> None:
    csv = tmp_path / "fall.csv"
    rows = ["t,x,y,z"] + [f"{i / 50:.3f},{x},{y},{z}" for i, (x, y, z) in
                          enumerate(accel.fall(50.0, 10.0, seed=1))]
    csv.write_text("\n".join(rows))
    windows = accel.read_csv(csv, window_s=4.0)
    assert [len(w.samples) for w in windows] == [200, 200, 100]
    assert windows[1].offset_s == pytest.approx(4.0)
    assert windows[0].rate_hz == pytest.approx(50.0)
    ms2 = tmp_path / "ms2.csv"
    ms2.write_text("\n".join(f"{i * 20},0,0,9.80665" for i in range(10)))
    (w,) = accel.read_csv(ms2, unit="ms2", time_unit="ms")
    assert w.samples[0] == (0.0, 0.0, 1.0)
    records = recording.accel_records(windows, "c-1", "d-1", 1_700_000_000.0)
    assert [r.topic for r in records] == ["eldercare/v1/c-1/d-1/event"] * 3
    assert records[0].t < records[1].t < records[2].t
