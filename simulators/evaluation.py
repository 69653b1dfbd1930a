"""Offline evaluation of the detectors on what the simulators make. It lives here, above the
detectors, because it builds its homes and the cane's motions with the simulators.

- `evaluate`: the labelled event streams (`eldercare eval`), with the simulators' accelerometer
  windows for the cane's falls and dropped canes.
- `simulated_homes`: simulated homes as home logs (`eldercare eval --dataset homes
  sim:ELDERS:DAYS`): the simulator's ordinary days, with the full kit's home sensors (wearables
  left out, as real kits mostly have none), through the same loaders' shape as the real homes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from detectors.config import DetectorConfig
from detectors.evaluation.homes import Home, Reading

# The simulated homes' days end here (a Monday, 00:00 in Shanghai).
SIM_END = datetime(2026, 6, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
SENSOR_KINDS = frozenset({"motion_sensor", "door_contact", "pressure_mat", "toilet_flush",
                          "smart_plug", "water_flow", "cupboard_contact"})


def evaluate(elders: int = 12, scored_days: int = 14, warmup_days: int = 21, seed: int = 7,
             config: DetectorConfig | None = None) -> dict[str, Any]:
    """The labelled streams, with the simulators' cane motions, replayed and scored."""
    from detectors.evaluation import score
    from simulators import accel

    return score.evaluate(elders, scored_days, warmup_days, seed, config, accel=accel)


def simulated_homes(spec: str, seed: int = 7) -> list[Home]:
    """`sim:ELDERS:DAYS` (e.g. sim:6:28) -> that many simulated homes of that many days."""
    from simulators import population, routine
    from simulators.clock import LOCAL, start_in_past
    from simulators.timeline import Timeline

    parts = spec.split(":")
    try:
        elders, days = int(parts[1]), int(parts[2])
    except (IndexError, ValueError) as exc:
        raise ValueError(f"{spec!r}: expected sim:ELDERS:DAYS, e.g. sim:6:28") from exc
    _, sims = population.build("eval", [], extra_elders=elders, seed=seed)
    # Days that end at a fixed date, not today: the simulated week (weekdays, the seeded
    # draws per day) and so every figure of `eval --dataset homes sim:...` are the same on
    # any day the command is run.
    start = start_in_past("00:00", days * 86400, now=SIM_END.timestamp())
    homes = []
    for sim in sims:
        tl = Timeline()
        routine.add_life(tl, sim, start, start + days * 86400, seed)
        readings = []
        for step in tl.ordered():
            kind = step.device.kind
            if kind not in SENSOR_KINDS or step.action != "publish":
                continue
            body = step.body
            value = ("on" if body.get("open", body.get("occupied", True)) else "off")
            if "watts" in body:
                value = str(body["watts"])
            if "flow" in body:
                value = str(body["flow"])
            t = datetime.fromtimestamp(step.t, LOCAL).replace(tzinfo=None)
            suffix = step.device.device_id.rsplit("-", 1)[-1]
            readings.append(Reading(t, suffix, "", kind, value))
        homes.append(Home(f"sim-{sim.key}", readings))
    return homes
