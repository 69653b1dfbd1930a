"""Scenarios as YAML: a population, events injected at simulated times, expected outcomes.

A scenario compiles into a `Timeline` (everyone's ordinary life plus the injections); the runner
plays it against the running stack and checks the outcomes (`simulators.outcomes`)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulators import accel, payloads, routine
from simulators.clock import parse_duration
from simulators.population import ElderSpec, SimElder, offset
from simulators.timeline import Step, Timeline

Duration = str | float | int

EventKind = Literal["sos", "fall", "dropped_cane", "smoke", "gas", "heat", "vital",
                    "stops_moving", "battery_dies", "gateway_offline", "away", "skip_checkin",
                    "checkin", "wanders", "tamper", "water_leak", "acknowledged", "resolved"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PopulationSpec(_Strict):
    communities: int = 1
    extra_elders: int = 0
    elders: list[dict[str, Any]] = Field(default_factory=list)

    def elder_specs(self) -> list[ElderSpec]:
        return [ElderSpec(**e) for e in self.elders]


class Injection(_Strict):
    """Something that happens to one elder `at` a simulated time after the start."""

    at: Duration
    elder: str
    event: EventKind
    device: str | None = None        # kit suffix: sos, cane, watch, bp, pir-living…
    lasts: Duration | None = Field(None, alias="for")  # away, gateway_offline, stops_moving
    clears_after: Duration | None = None   # smoke/gas/heat: the alarm stops sounding
    gets_up_after: Duration | None = None  # fall: the elder gets up and walks again
    mode: Literal["flag", "accel", "both"] = "both"  # fall: device flag, raw window, or both
    bp: tuple[float, float] | None = None
    glucose: float | None = None
    spo2: float | None = None
    hr: float | None = None
    temperature_c: float | None = None
    repeat: int = 1
    every: Duration = "3m"
    # sos/fall: where the elder is, metres (north, east) from home; the press carries a GNSS
    # position. wanders: how fast the watch moves away from home, metres per minute.
    where_m: tuple[float, float] | None = None
    speed_m_per_min: float = 60.0
    # acknowledged: which contact replies "1" to the alert SMS; resolved: the outcome.
    contact: int = 1
    outcome: Literal["help_sent", "false_alarm", "transferred_120_119", "elder_fine"] = \
        "elder_fine"

    @property
    def at_s(self) -> float:
        return parse_duration(self.at)


class Expectation(_Strict):
    """One outcome. Exactly one of alert / incident / incidents / call / sms / no_alert is set.

    `incidents` is how many emergency incidents the elder must have in all, device maintenance
    left out (one emergency, one incident); `times` makes a `call`/`sms` expectation exact
    (one ladder: contact 1 is called once, not once per alert).

    `within` (simulated time) bounds the alert's or incident's event time after the elder's
    first injection (or the scenario start); `no_alert` is "any" (every non-maintenance kind)
    or a list of kinds that must not be alerted for the elder."""

    elder: str
    alert: str | None = None
    incident: str | None = None
    incidents: int | None = Field(None, ge=0)
    call: int | None = None
    sms: int | None = None
    times: int | None = Field(None, ge=0)
    no_alert: str | list[str] | None = None
    within: Duration | None = None

    @model_validator(mode="after")
    def _one(self) -> Expectation:
        set_ = [f for f in ("alert", "incident", "incidents", "call", "sms", "no_alert")
                if getattr(self, f) is not None]
        if len(set_) != 1:
            raise ValueError(
                f"exactly one of alert/incident/incidents/call/sms/no_alert, got {set_}")
        if self.times is not None and self.call is None and self.sms is None:
            raise ValueError("times counts calls or SMS: set call or sms with it")
        return self

    def describe(self) -> str:
        if self.alert:
            return f"alert {self.alert}" + (f" within {self.within}" if self.within else "")
        if self.incident:
            return f"incident {self.incident}" + (f" within {self.within}" if self.within else "")
        if self.incidents is not None:
            return f"{self.incidents} emergency incident(s) in all"
        exactly = f" exactly {self.times} time(s)" if self.times is not None else ""
        if self.call is not None:
            return f"call to contact {self.call}{exactly}"
        if self.sms is not None:
            return f"SMS to contact {self.sms}{exactly}"
        kinds = self.no_alert if isinstance(self.no_alert, str) else ", ".join(self.no_alert or [])
        return f"no alert ({kinds})"


class Scenario(_Strict):
    name: str
    description: str = ""
    requires: list[str] = Field(default_factory=list)
    start: str = "07:00"
    duration: Duration = "2h"
    speed: float = 600.0
    seed: int = 1
    timeout: Duration = "30s"
    population: PopulationSpec = Field(default_factory=PopulationSpec)
    inject: list[Injection] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return parse_duration(self.duration)

    @model_validator(mode="after")
    def _known_elders(self) -> Scenario:
        keys = {e.key for e in self.population.elder_specs()}
        keys |= {f"x{n}" for n in range(1, self.population.extra_elders + 1)}
        for ref in [i.elder for i in self.inject] + [e.elder for e in self.expect]:
            if ref not in keys:
                raise ValueError(f"elder {ref!r} is not in the population ({sorted(keys)})")
        return self


def load(path: Path) -> Scenario:
    """Read and check one scenario file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Scenario.model_validate(data)


def compile_timeline(sc: Scenario, sims: list[SimElder], start: float) -> list[Step]:
    """Everyone's life over the scenario span, changed by the injections."""
    end = start + sc.duration_s
    tl = Timeline()
    for sim in sims:
        routine.add_life(tl, sim, start, end, sc.seed)
        routine.add_heartbeats(tl, sim, start, end, sc.seed)
    by_key = {s.key: s for s in sims}
    for inj in sorted(sc.inject, key=lambda i: i.at_s):
        _inject(tl, inj, by_key[inj.elder], start + inj.at_s, end)
    return tl.ordered()


def _silence(tl: Timeline, sim: SimElder, frm: float, to: float, everything: bool = False) -> None:
    """Remove the elder's activity (or all traffic) between `frm` and `to`."""
    tl.remove(lambda s: not (s.device.elder_key == sim.key and frm <= s.t < to
                             and (everything or s.activity)))


def _inject(tl: Timeline, inj: Injection, sim: SimElder, t: float, end: float) -> None:
    def add(at: float, suffix: str, body: dict[str, Any], label: str = "") -> None:
        tl.add(at, routine.ref(sim, suffix), body, activity=True, label=label or inj.event)

    lasts = parse_duration(inj.lasts) if inj.lasts is not None else end - t
    ev = inj.event
    def located(body: dict[str, Any]) -> dict[str, Any]:
        home = sim.elder.home
        if inj.where_m is None or home is None:
            return body
        lat, lon = offset(home["lat"], home["lon"], *inj.where_m)
        return {**body, "location": payloads.position(lat, lon, 8.0)}

    if ev == "sos":
        add(t, inj.device or "sos", located(payloads.sos()))
    elif ev in ("fall", "dropped_cane"):
        dev = inj.device or "cane"
        if ev == "fall":
            up_after = parse_duration(inj.gets_up_after) if inj.gets_up_after else None
            _silence(tl, sim, t, t + up_after if up_after else end)
            if inj.mode in ("accel", "both"):
                add(t, dev, payloads.accel_window(accel.fall(seed=int(t)), accel.DEFAULT_RATE_HZ))
                for k in (1, 2):  # still lying: the device keeps sending windows
                    add(t + 5 * k, dev, payloads.accel_window(
                        accel.lying(accel.DEFAULT_RATE_HZ, accel.WINDOW_S, int(t) + k),
                        accel.DEFAULT_RATE_HZ))
            if inj.mode in ("flag", "both"):
                add(t + 1, dev, located(payloads.fall(0.92)))
            if up_after:
                add(t + up_after, "cane", payloads.steps(12))
                add(t + up_after + 5, sim_motion(sim), payloads.motion())
        else:
            add(t, dev, payloads.accel_window(accel.dropped_cane(seed=int(t)),
                                              accel.DEFAULT_RATE_HZ))
            add(t + 8, dev, payloads.steps(30))
            add(t + 30, dev, payloads.steps(80))
    elif ev in ("smoke", "gas", "heat"):
        temp = inj.temperature_c if inj.temperature_c is not None else (72.0 if ev == "heat"
                                                                         else None)
        add(t, inj.device or ev, payloads.alarm(ev, True, temp))
        if inj.clears_after is not None:
            add(t + parse_duration(inj.clears_after), inj.device or ev,
                payloads.alarm(ev, False, 30.0 if ev == "heat" else None))
    elif ev == "vital":
        for k in range(inj.repeat):
            at = t + k * parse_duration(inj.every)
            if inj.bp is not None:
                add(at, inj.device or "bp", payloads.blood_pressure(inj.bp[0], inj.bp[1], 88))
            if inj.glucose is not None:
                add(at, inj.device or "glucose", payloads.glucose(inj.glucose))
            if inj.spo2 is not None:
                add(at, inj.device or "watch", payloads.spo2(inj.spo2))
            if inj.hr is not None:
                add(at, inj.device or "watch", payloads.heart_rate(inj.hr))
    elif ev == "wanders":
        _wanders(tl, sim, inj, t, min(end, t + lasts))
    elif ev == "stops_moving":
        _silence(tl, sim, t, t + lasts)
    elif ev == "away":
        add(t - 60, "door", payloads.door(True), "leaves")
        add(t - 40, "door", payloads.door(False))
        _silence(tl, sim, t - 30, t + lasts)
        if t + lasts < end:
            add(t + lasts, "door", payloads.door(True), "returns")
            add(t + lasts + 20, "door", payloads.door(False))
    elif ev == "skip_checkin":
        tl.remove(lambda s: not (s.device.elder_key == sim.key and s.label == "checkin"
                                 and t <= s.t < t + 86400))
    elif ev in ("acknowledged", "resolved"):
        what: dict[str, Any] = {"elder_id": sim.elder.id, "do": "acknowledge"}
        if ev == "acknowledged":
            c = next(c for c in sim.elder.contacts if c.priority == inj.contact)
            what |= {"phone": c.phone, "name": c.name}
        else:
            what = {"elder_id": sim.elder.id, "do": "resolve", "outcome": inj.outcome}
        tl.add(t, routine.ref(sim, inj.device or "sos"), what, action="respond", label=ev)
    elif ev == "checkin":
        add(t, inj.device or "sos", payloads.ok(), "checkin")
    elif ev == "tamper":
        add(t, inj.device or "smoke", payloads.tamper())
    elif ev == "water_leak":
        add(t, inj.device or "leak", payloads.water_leak(True))
        if inj.clears_after is not None:
            add(t + parse_duration(inj.clears_after), inj.device or "leak",
                payloads.water_leak(False))
    elif ev == "battery_dies":
        _battery_dies(tl, sim, inj.device or "cane", t, end)
    elif ev == "gateway_offline":
        _silence(tl, sim, t, t + lasts, everything=True)
        for suffix in sim.devices:
            tl.add(t, routine.ref(sim, suffix), action="drop", label="gateway_offline")
            if t + lasts < end:
                tl.add(t + lasts, routine.ref(sim, suffix), action="reconnect")


def _wanders(tl: Timeline, sim: SimElder, inj: Injection, t: float, until: float) -> None:
    """The elder walks away from home and keeps going: the watch reports every 2 minutes."""
    home = sim.elder.home
    if home is None:
        return
    way = random.Random(int(t)).uniform(0, 2 * math.pi)
    r = routine.ref(sim, inj.device or "watch")
    x = t
    while x < until:
        out = inj.speed_m_per_min * (x - t) / 60
        lat, lon = offset(home["lat"], home["lon"], out * math.cos(way), out * math.sin(way))
        tl.add(x, r, payloads.location(lat, lon, 10.0), activity=True, label="wanders")
        x += 120


def sim_motion(sim: SimElder) -> str:
    return "pir-living" if "pir-living" in sim.devices else next(iter(sim.devices))


def _battery_dies(tl: Timeline, sim: SimElder, suffix: str, t: float, end: float) -> None:
    """Battery reports fall to nothing over an hour, then the device goes silent for good."""
    dev_id = sim.devices[suffix].id
    tl.remove(lambda s: not (s.device.device_id == dev_id and s.t >= t))
    r = routine.ref(sim, suffix)
    for k, level in enumerate((15, 9, 4, 1)):
        tl.add(t + k * 900, r, payloads.heartbeat(level), label="battery")
    tl.add(t + 3600, r, action="drop", label="battery_dead")
