"""Time the learned fall classifier on one core: milliseconds per device window, per position
and device rate, everything included (resampling, features, every tree). Reported by
`eldercare bench detect` under `fall_model`."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from detectors.falls.classifier import shipped_models
from detectors.falls.training import AFTER_S, BEFORE_S

RATES_HZ = (25.0, 50.0, 100.0)


def window(rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """A device window (BEFORE_S + AFTER_S seconds) with an impact: worst case for the trees,
    as every feature is measured."""
    n = round((BEFORE_S + AFTER_S) * rate_hz)
    xyz = np.tile([0.0, 1.0, 0.0], (n, 1)) + rng.normal(0.0, 0.05, (n, 3))
    xyz[round(BEFORE_S * rate_hz)] = [2.5, 2.0, 0.3]
    return xyz


def run(repeats: int = 300) -> dict[str, Any]:
    """p50 and p99 ms per window for each position's model at each device rate."""
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {}
    for position, model in sorted(shipped_models().items()):
        for rate in RATES_HZ:
            w = window(rate, rng)
            samples = w.tolist()  # as a window arrives in an event
            model.judge(samples, rate)  # warm-up
            took = []
            for _ in range(repeats):
                t = time.perf_counter()
                model.judge(samples, rate)
                took.append((time.perf_counter() - t) * 1000.0)
            out[f"{position}_{rate:g}hz_ms_p50"] = round(float(np.percentile(took, 50)), 3)
            out[f"{position}_{rate:g}hz_ms_p99"] = round(float(np.percentile(took, 99)), 3)
    out["max_ms_p50"] = max((v for k, v in out.items() if k.endswith("_p50")), default=None)
    return out
