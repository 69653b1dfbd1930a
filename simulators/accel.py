"""Accelerometer windows in g, as a cane or watch sends them: walking, a fall, a dropped cane,
lying still; and CSV recordings (t,x,y,z) cut into windows."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_RATE_HZ = 50.0
WINDOW_S = 4.0
G_MS2 = 9.80665

Samples = list[tuple[float, float, float]]


def _as_samples(xyz: np.ndarray) -> Samples:
    return [(round(float(x), 3), round(float(y), 3), round(float(z), 3)) for x, y, z in xyz]


def _noise(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    return rng.normal(0.0, sd, size=(n, 3))


def walking(rate_hz: float, seconds: float, seed: int = 0) -> Samples:
    """Upright, ~1.7 steps/s: gravity on z with a step rhythm."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    xyz = np.zeros((len(t), 3))
    xyz[:, 0] = 0.08 * np.sin(2 * np.pi * 0.85 * t)
    xyz[:, 2] = 1.0 + 0.18 * np.sin(2 * np.pi * 1.7 * t)
    return _as_samples(xyz + _noise(rng, len(t), 0.03))


def lying(rate_hz: float, seconds: float, seed: int = 0) -> Samples:
    """Still, on the floor: gravity on x (orientation changed), almost no movement."""
    rng = np.random.default_rng(seed)
    n = int(rate_hz * seconds)
    xyz = np.tile([1.0, 0.05, 0.1], (n, 1))
    return _as_samples(xyz + _noise(rng, n, 0.01))


def _impact(rate_hz: float, peak_g: float, rng: np.random.Generator) -> np.ndarray:
    """~0.35 s of free fall (|a| near 0) then a short spike of `peak_g`."""
    free = np.tile([0.1, 0.05, 0.15], (int(rate_hz * 0.35), 1)) + _noise(rng, int(rate_hz * 0.35),
                                                                            0.05)
    spike = np.array([[peak_g * 0.7, peak_g * 0.3, peak_g * 0.65]] * max(2, int(rate_hz * 0.06)))
    return np.vstack([free, spike])


def fall(rate_hz: float = DEFAULT_RATE_HZ, seconds: float = WINDOW_S, seed: int = 0) -> Samples:
    """Walking, a turning free fall, a quarter second of impacts (peaks of 3-5 g), a second of
    settling, then lying still on the side. Shaped like the falls of the public datasets
    (several impacts, not one clean spike), which the learned fall classifier was trained on."""
    rng = np.random.default_rng(seed)
    before = np.array(walking(rate_hz, 1.0, seed))
    n = int(rate_hz * 0.35)
    turn = np.linspace(0.0, np.pi / 2, n)
    descent = np.stack([np.sin(turn), 0 * turn, np.cos(turn)], axis=1) \
        * np.linspace(1.0, 0.15, n)[:, None] + _noise(rng, n, 0.05)
    burst = _noise(rng, max(2, int(rate_hz * 0.25)), 1.2) + np.array([2.4, 0.6, 1.0])
    m = int(rate_hz * 0.8)
    settle = np.tile([1.0, 0.05, 0.1], (m, 1)) + _noise(rng, m, 0.3) \
        * np.linspace(1.0, 0.1, m)[:, None]
    hit = np.vstack([descent, burst, settle])
    rest = int(rate_hz * seconds) - len(before) - len(hit)
    after = np.array(lying(rate_hz, rest / rate_hz, seed + 1))
    return _as_samples(np.vstack([before, hit, after]))


def dropped_cane(rate_hz: float = DEFAULT_RATE_HZ, seconds: float = WINDOW_S,
                 seed: int = 0) -> Samples:
    """The cane slips: free fall, a sharp ~3 g knock, a moment on the floor, picked up, walking."""
    rng = np.random.default_rng(seed)
    upright = np.tile([0.0, 0.0, 1.0], (int(rate_hz * 0.8), 1)) + _noise(rng, int(rate_hz * 0.8),
                                                                          0.02)
    hit = _impact(rate_hz, 3.0, rng)
    floor = np.tile([0.0, 1.0, 0.05], (int(rate_hz * 0.9), 1)) + _noise(rng, int(rate_hz * 0.9),
                                                                         0.01)
    lift = np.linspace([0.0, 1.0, 0.05], [0.0, 0.0, 1.0], int(rate_hz * 0.5)) + _noise(
        rng, int(rate_hz * 0.5), 0.08)
    rest = int(rate_hz * seconds) - len(upright) - len(hit) - len(floor) - len(lift)
    walk = np.array(walking(rate_hz, max(rest, 1) / rate_hz, seed + 2))
    return _as_samples(np.vstack([upright, hit, floor, lift, walk]))


@dataclass(frozen=True)
class Window:
    """One accelerometer window cut from a recording: offset of its first sample, rate, samples."""

    offset_s: float
    rate_hz: float
    samples: Samples


def read_csv(path: Path, unit: str = "g", time_unit: str = "s",
             window_s: float = WINDOW_S) -> list[Window]:
    """Cut a CSV of samples into windows.

    Columns `t,x,y,z` (a header row is optional). `unit`: "g" or "ms2" (m/s², divided by g).
    `time_unit`: "s" or "ms". The rate is the median sample interval's inverse."""
    rows: list[tuple[float, float, float, float]] = []
    with path.open(newline="") as f:
        for rec in csv.reader(f):
            if not rec or rec[0].strip().lower() in {"t", "time", "timestamp"}:
                continue
            try:
                rows.append((float(rec[0]), float(rec[1]), float(rec[2]), float(rec[3])))
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}: bad row {rec!r}: expected t,x,y,z numbers") from exc
    if len(rows) < 2:
        raise ValueError(f"{path}: needs at least two samples")
    data = np.array(rows)
    t = data[:, 0] / (1000.0 if time_unit == "ms" else 1.0)
    t -= t[0]
    xyz = data[:, 1:] / (G_MS2 if unit == "ms2" else 1.0)
    rate = 1.0 / float(np.median(np.diff(t)))
    per = max(1, round(rate * window_s))
    per = min(per, 4000)  # the schema's limit per window
    return [Window(float(t[i]), round(rate, 3), _as_samples(xyz[i:i + per]))
            for i in range(0, len(xyz), per)]
