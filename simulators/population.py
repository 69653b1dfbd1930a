"""Simulated elders: registry records (communities, elders, contacts, devices) plus the habits
that drive their days. Seeded, so the same spec always gives the same people."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from devices.catalogue import DeviceKind
from devices.registry import Community, Contact, Device, Elder, Staff
from simulators.clock import parse_clock_time

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ["秀英", "桂英", "玉兰", "建国", "德明", "淑珍", "国华", "凤兰", "志强", "文华",
          "素芬", "永福", "金凤", "春生", "丽华", "宝山", "秀兰", "振华", "爱华", "长林"]
_RELATIONS = ["儿子", "女儿", "儿媳", "女婿", "孙子", "侄女"]

# Every home gets the full kit: (kind, id suffix, room). Three motion sensors, so the day has
# a shape (bedroom at night, bathroom in the morning, living room by day).
KIT: list[tuple[DeviceKind, str, str]] = [
    (DeviceKind.SOS_BUTTON, "sos", "卧室"),
    (DeviceKind.SMART_CANE, "cane", ""),
    (DeviceKind.SMART_WATCH, "watch", ""),
    (DeviceKind.SMOKE_ALARM, "smoke", "厨房"),
    (DeviceKind.GAS_ALARM, "gas", "厨房"),
    (DeviceKind.HEAT_ALARM, "heat", "厨房"),
    (DeviceKind.BP_METER, "bp", "卧室"),
    (DeviceKind.GLUCOSE_METER, "glucose", "卧室"),
    (DeviceKind.MOTION_SENSOR, "pir-living", "客厅"),
    (DeviceKind.MOTION_SENSOR, "pir-bath", "卫生间"),
    (DeviceKind.MOTION_SENSOR, "pir-bed", "卧室"),
    (DeviceKind.DOOR_CONTACT, "door", "大门"),
    (DeviceKind.WATER_LEAK_SENSOR, "leak", "卫生间"),
]
# What real kits add, in one home of three (the first of a population has it): homes differ,
# and the detectors must do with either kit.
EXTENDED_KIT: list[tuple[DeviceKind, str, str]] = [
    (DeviceKind.PRESSURE_MAT, "bed-mat", "卧室"),
    (DeviceKind.TOILET_FLUSH, "flush", "卫生间"),
    (DeviceKind.SMART_PLUG, "kettle", "厨房"),
    (DeviceKind.WATER_FLOW, "tap", "卫生间"),
    (DeviceKind.CUPBOARD_CONTACT, "fridge", "厨房"),
]
EXTENDED_EVERY = 3


@dataclass(frozen=True)
class Habits:
    """One elder's day: clock times are seconds after local midnight."""

    wake_s: float = 6.5 * 3600
    sleep_s: float = 21.5 * 3600
    walks: int = 2
    checks_bp: bool = True
    checks_glucose: bool = True
    checkin_s: float | None = None
    usual_wake_s: float | None = None  # as staff would enter it in the registry (`wake` given)
    visitor_chance: float = 0.2
    systolic: float = 132.0
    diastolic: float = 82.0
    glucose: float = 5.8


@dataclass(frozen=True)
class ElderSpec:
    """An elder as a scenario names it (`key`), with optional habits that override the seed."""

    key: str
    lives_alone: bool = True
    wake: str | None = None
    sleep: str | None = None
    walks: int | None = None
    checkin: str | None = None
    contacts: int = 3
    safe_zone_m: float | None = None  # a circular safe zone around home, metres


# Simulated homes lie around this point (和平里, Beijing), a few hundred metres apart.
HOME_CENTRE = (39.9583, 116.4172)
METRES_PER_DEG_LAT = 111_195.0


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The WGS-84 point `north_m`/`east_m` metres from (lat, lon): flat earth, fine for km."""
    return (lat + north_m / METRES_PER_DEG_LAT,
            lon + east_m / (METRES_PER_DEG_LAT * math.cos(math.radians(lat))))


@dataclass
class SimElder:
    key: str
    elder: Elder
    habits: Habits
    devices: dict[str, Device] = field(default_factory=dict)  # by id suffix, e.g. "cane"


def _habits(rng: random.Random, spec: ElderSpec) -> Habits:
    return Habits(
        wake_s=parse_clock_time(spec.wake) if spec.wake else rng.uniform(5.75, 7.25) * 3600,
        sleep_s=parse_clock_time(spec.sleep) if spec.sleep else rng.uniform(21.0, 22.5) * 3600,
        walks=spec.walks if spec.walks is not None else rng.choice([1, 2, 2]),
        checks_bp=rng.random() < 0.9, checks_glucose=rng.random() < 0.6,
        checkin_s=parse_clock_time(spec.checkin) if spec.checkin else None,
        usual_wake_s=parse_clock_time(spec.wake) if spec.wake else None,
        visitor_chance=rng.uniform(0.1, 0.35), systolic=rng.uniform(118, 140),
        diastolic=rng.uniform(72, 86), glucose=rng.uniform(5.0, 6.6),
    )


def build(tag: str, specs: list[ElderSpec], communities: int = 1, extra_elders: int = 0,
          seed: int = 1) -> tuple[list[Community], list[SimElder]]:
    """Registry records and habits for the named elders plus `extra_elders` anonymous ones,
    spread round-robin over `communities` communities. Ids carry `tag`, so runs never collide."""
    rng = random.Random(seed)
    all_specs = specs + [ElderSpec(f"x{n}", lives_alone=rng.random() < 0.4)
                         for n in range(1, extra_elders + 1)]
    cids = [f"c-sim-{tag}-{n}" for n in range(1, communities + 1)]
    by_community: dict[str, list[Elder]] = {cid: [] for cid in cids}
    sims: list[SimElder] = []
    for i, spec in enumerate(all_specs):
        cid = cids[i % len(cids)]
        eid = f"E-{tag}-{spec.key}"
        name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
        contacts = [
            Contact(p, rng.choice(_SURNAMES) + rng.choice(_GIVEN), rng.choice(_RELATIONS),
                    f"+86138{rng.randint(10000000, 99999999)}")
            for p in range(1, spec.contacts + 1)
        ]
        home_kit = KIT + (EXTENDED_KIT if i % EXTENDED_EVERY == 0 else [])
        kit = {suffix: Device(f"{eid}-{suffix}", kind, room) for kind, suffix, room in home_kit}
        address = f"模拟路{i + 1}号{rng.randint(1, 6)}单元{rng.randint(101, 604)}室"
        # Its own generator, so adding homes left everyone's seeded habits as they were.
        spot = random.Random(f"home-{seed}-{spec.key}")
        lat, lon = offset(*HOME_CENTRE, spot.uniform(-800, 800), spot.uniform(-800, 800))
        home = {"lat": round(lat, 7), "lon": round(lon, 7), "radius_m": 100.0}
        zone = None if spec.safe_zone_m is None else {
            "shape": "circle", "radius_m": spec.safe_zone_m, "polygon": [], "dwell_min": 10,
            "hours": [], "timezone": "Asia/Shanghai"}
        elder = Elder(eid, cid, name, address, phone=f"+86139{rng.randint(10000000, 99999999)}",
                      lives_alone=spec.lives_alone, contacts=contacts, devices=list(kit.values()),
                      home=home, safe_zone=zone)
        by_community[cid].append(elder)
        sims.append(SimElder(spec.key, elder, _habits(rng, spec), kit))
    out = [
        Community(cid, f"模拟社区{tag}-{n}", "模拟区", "模拟街道", "+861000000000", elders,
                  [Staff(f"{cid}-duty", cid, "模拟值班员",
                         f"+86137{rng.randint(10**7, 10**8 - 1)}")])
        for n, (cid, elders) in enumerate(by_community.items(), start=1)
    ]
    return out, sims
