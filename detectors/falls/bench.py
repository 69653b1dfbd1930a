"""Time the learned fall classifier on one core: milliseconds per device window, per position
and device rate, everything included (resampling, features, every tree). Reported by
`eldercare bench detect` under `fall_model`."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from detectors.falls.classifier import shipped_models
from detectors.falls.device_windows import AFTER_S, BEFORE_S

RATES_HZ = (25.0, 50.0, 100.0)


def window(rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """A device window (BEFORE_S + AFTER_S seconds) with an impact: worst case for the trees,
    as every feature is measured."""
    n = round((BEFORE_S + AFTER_S) * rate_hz)
    xyz = np.tile([0.0, 1.0, 0.0], (n, 1)) + rng.normal(0.0, 0.05, (n, 3))
    xyz[round(BEFORE_S * rate_hz)] = [2.5, 2.0, 0.3]
    return xyz


def run(repeats: int = 40, batch: int = 10) -> dict[str, Any]:
    """Per position and device rate: CPU ms per window (this thread's CPU time, so other
    processes on a shared machine do not inflate it), median and worst over `repeats` batches
    of `batch` windows, and the median wall-clock ms for comparison."""
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {}
    for position, model in sorted(shipped_models().items()):
        for rate in RATES_HZ:
            samples = window(rate, rng).tolist()  # as a window arrives in an event
            model.judge(samples, rate)  # warm-up
            cpu, wall = [], []
            for _ in range(repeats):
                c, t = time.thread_time(), time.perf_counter()
                for _ in range(batch):
                    model.judge(samples, rate)
                cpu.append((time.thread_time() - c) * 1000.0 / batch)
                wall.append((time.perf_counter() - t) * 1000.0 / batch)
            key = f"{position}_{rate:g}hz"
            out[f"{key}_cpu_ms_p50"] = round(float(np.percentile(cpu, 50)), 3)
            out[f"{key}_cpu_ms_max"] = round(float(np.max(cpu)), 3)
            out[f"{key}_wall_ms_p50"] = round(float(np.percentile(wall, 50)), 3)
    out["worst_cpu_ms_p50"] = max((v for k, v in out.items() if k.endswith("_cpu_ms_p50")),
                                  default=None)
    return out
