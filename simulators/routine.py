"""Daily life as device traffic: sleep and wake, bathroom visits, meals, walks with the cane,
morning blood pressure and glucose, the watch's vitals, visitors; and every device's heartbeats
with battery drain. Seeded per elder and day, so a scenario replays identically."""

from __future__ import annotations

import math
import random
from typing import Any

from devices.catalogue import CATALOGUE
from simulators import accel, payloads
from simulators.clock import local_midnight
from simulators.population import SimElder, offset
from simulators.timeline import DeviceRef, Timeline

# Battery drain, percent per simulated day. The watch is charged every night.
DRAIN_PER_DAY = {"smart_cane": 2.0, "smart_watch": 30.0, "sos_button": 0.1}
DEFAULT_DRAIN = 0.05
WITH_THE_ELDER = frozenset({"cane", "watch", "sos", "door"})  # what still reports on a walk


def ref(sim: SimElder, suffix: str) -> DeviceRef:
    d = sim.devices[suffix]
    return DeviceRef(sim.elder.community_id, d.id, str(d.kind), sim.key)


class DayWriter:
    """Adds one elder's activity to the timeline, clipped to the simulated span."""

    def __init__(self, tl: Timeline, sim: SimElder, start: float, end: float,
                 rng: random.Random) -> None:
        self.tl, self.sim, self.start, self.end, self.rng = tl, sim, start, end, rng
        self.out: list[tuple[float, float]] = []  # out of the flat (walks): home sensors quiet

    def emit(self, t: float, suffix: str, body: dict[str, Any], label: str = "") -> None:
        if suffix not in WITH_THE_ELDER and any(a <= t < b for a, b in self.out):
            return
        if self.start <= t < self.end:
            self.tl.add(t, ref(self.sim, suffix), body, activity=True, label=label)

    def motions(self, t: float, minutes: float, suffix: str = "pir-living") -> None:
        """A PIR sensor reports every few minutes while someone is in the room."""
        end = t + minutes * 60
        while t < end:
            self.emit(t, suffix, payloads.motion())
            t += self.rng.uniform(120, 360)

    def has(self, suffix: str) -> bool:
        return suffix in self.sim.devices

    def toilet(self, t: float) -> None:
        """A bathroom visit: the flush, then the tap for washing hands."""
        if self.has("flush"):
            self.emit(t, "flush", payloads.flush())
        if self.has("tap"):
            self.emit(t + 20, "tap", payloads.water(self.rng.uniform(4, 8)))
            self.emit(t + 50, "tap", payloads.water(0))

    def bed(self, t: float, occupied: bool) -> None:
        if self.has("bed-mat"):
            self.emit(t, "bed-mat", payloads.occupancy(occupied))

    def kitchen(self, t: float) -> None:
        """A meal's kitchen traces: the fridge opened and shut, the kettle on for a few minutes."""
        if self.has("fridge"):
            self.emit(t, "fridge", payloads.contact(True))
            self.emit(t + self.rng.uniform(10, 40), "fridge", payloads.contact(False))
        if self.has("kettle"):
            self.emit(t + 60, "kettle", payloads.power(self.rng.uniform(1800, 2200)))
            self.emit(t + 60 + self.rng.uniform(150, 240), "kettle", payloads.power(0.4))

    def walk(self, t: float, minutes: float) -> None:
        rng = self.rng
        self.emit(t, "door", payloads.door(True))
        self.emit(t + 20, "door", payloads.door(False))
        self.emit(t + 60, "cane", payloads.accel_window(
            accel.walking(accel.DEFAULT_RATE_HZ, accel.WINDOW_S, rng.randrange(10**6)),
            accel.DEFAULT_RATE_HZ), label="walk")
        x = t + 60.0
        while x < t + minutes * 60:
            self.emit(x, "cane", payloads.steps(rng.randint(250, 550)))
            if rng.random() < 0.5:
                self.emit(x + 30, "watch", payloads.steps(rng.randint(250, 550)))
            x += 300
        self.positions(t, minutes)
        back = t + minutes * 60
        self.out.append((t + 21, back))
        self.emit(back, "door", payloads.door(True))
        self.emit(back + 15, "door", payloads.door(False))
        self.motions(back + 60, 10)


    def positions(self, t: float, minutes: float, reach_m: float = 300.0) -> None:
        """The watch's position every 5 minutes of a walk: out along one street and back,
        never further than `reach_m` from home. Its own generator keeps the day's other
        seeded draws as they were."""
        home = self.sim.elder.home
        if home is None:
            return
        way = random.Random(int(t)).uniform(0, 2 * math.pi)
        total = minutes * 60
        x = 120.0
        while x < total:
            out = reach_m * (1 - abs(2 * x / total - 1))  # 0 -> reach -> 0
            lat, lon = offset(home["lat"], home["lon"], out * math.cos(way), out * math.sin(way))
            self.emit(t + x, "watch", payloads.location(lat, lon, 12.0), "walk_position")
            x += 300


def add_day(w: DayWriter, midnight: float) -> None:
    """One ordinary day of `w.sim`, starting at local `midnight`."""
    h, rng = w.sim.habits, w.rng
    wake = midnight + h.wake_s + rng.gauss(0, 600)
    sleep = midnight + h.sleep_s + rng.gauss(0, 900)
    for _ in range(rng.choice([0, 1, 1, 2])):  # night-time bathroom visits
        t = midnight + rng.uniform(1.0, max(1.5, h.wake_s / 3600 - 1.0)) * 3600
        w.bed(t - 10, False)
        w.emit(t, "pir-bed", payloads.motion())
        w.emit(t + 60, "pir-bath", payloads.motion())
        w.toilet(t + 180)
        w.emit(t + 300, "pir-bed", payloads.motion())
        w.bed(t + 330, True)
    w.bed(wake - 10, False)
    w.emit(wake, "pir-bed", payloads.motion(), "wake")
    w.motions(wake + 120, 12, "pir-bath")
    w.toilet(wake + 400)
    if h.checks_bp:
        w.emit(wake + rng.uniform(1200, 2400), "bp", payloads.blood_pressure(
            rng.gauss(h.systolic, 7), rng.gauss(h.diastolic, 4), rng.gauss(70, 5)))
    if h.checks_glucose:
        w.emit(wake + rng.uniform(1500, 2600), "glucose",
               payloads.glucose(max(3.9, rng.gauss(h.glucose, 0.4))))
    if h.checkin_s is not None:
        w.emit(midnight + h.checkin_s - rng.uniform(0, 1800), "sos", payloads.ok(), "checkin")
    for meal in (wake + 3000, midnight + 12 * 3600, midnight + 18 * 3600):
        at = meal + rng.gauss(0, 900)
        w.motions(at, rng.uniform(25, 45))
        w.kitchen(at + 120)
        w.toilet(at + 3600 + rng.uniform(0, 1800))
    for start_h in [9.5, 15.5][: h.walks]:
        w.walk(midnight + start_h * 3600 + rng.gauss(0, 1200), rng.uniform(30, 60))
    t = wake + 3600
    while t < sleep - 1800:  # sitting, tea, television
        w.emit(t, "pir-living", payloads.motion())
        t += rng.uniform(1200, 3600)
    t = wake + 600
    while t < sleep:  # the watch's vitals during the day
        w.emit(t, "watch", payloads.heart_rate(rng.gauss(72, 5)))
        if rng.random() < 0.15:
            w.emit(t + 30, "watch", payloads.spo2(min(100.0, rng.gauss(97, 1))))
        t += 1800
    if rng.random() < h.visitor_chance:
        t = midnight + rng.uniform(14, 17) * 3600
        w.emit(t, "door", payloads.door(True), "visitor")
        w.emit(t + 30, "door", payloads.door(False))
        w.motions(t + 60, rng.uniform(30, 90))
    w.emit(sleep - 600, "pir-living", payloads.motion())
    w.emit(sleep, "pir-bed", payloads.motion(), "sleep")
    w.bed(sleep + 60, True)


def add_life(tl: Timeline, sim: SimElder, start: float, end: float, seed: int) -> None:
    """Every day of `sim` between `start` and `end` (activity only)."""
    midnight = local_midnight(start)
    while midnight < end:
        rng = random.Random(f"{seed}/{sim.key}/{int(midnight)}")
        add_day(DayWriter(tl, sim, start, end, rng), midnight)
        midnight += 86400


def add_heartbeats(tl: Timeline, sim: SimElder, start: float, end: float, seed: int) -> None:
    """Every device says it is alive at its kind's interval, with a slowly draining battery."""
    for suffix, device in sim.devices.items():
        rng = random.Random(f"{seed}/{device.id}/hb")
        interval = CATALOGUE[device.kind].heartbeat_interval_s
        drain = DRAIN_PER_DAY.get(str(device.kind), DEFAULT_DRAIN) / 86400
        battery = rng.uniform(70, 100)
        t = start + rng.uniform(0, min(interval, 300.0))  # every device speaks early on
        r = ref(sim, suffix)
        while t < end:
            level = battery - (t - start) * drain
            if device.kind == "smart_watch":  # charged overnight
                level = 100 - ((t - local_midnight(t) - 6 * 3600) % 86400) * drain
            tl.add(t, r, payloads.heartbeat(int(max(level, 25)), rssi=rng.randint(-80, -45)))
            t += interval
