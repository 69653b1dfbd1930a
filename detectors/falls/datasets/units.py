"""Unit guesses shared by loaders whose files do not state their units (watch exports)."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from detectors.falls.signal import Array

STANDARD_GRAVITY = 9.80665
# A recording's median magnitude is about 1 in g and about 9.8 in m/s^2 (the sensor always
# feels gravity); anything above this is taken as m/s^2.
MPS2_ABOVE = 3.0


def in_g(xyz: Array, name: str) -> Array:
    """Accelerations in g, converting from m/s^2 when the magnitudes say so."""
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"{name}: accelerations contain NaN or infinity")
    median = float(np.median(np.sqrt((xyz * xyz).sum(axis=1))))
    return xyz / STANDARD_GRAVITY if median > MPS2_ABOVE else xyz


def seconds(t: Array) -> Array:
    """Timestamps in seconds from 0: nanoseconds, microseconds or milliseconds are recognised by
    their median step (a wearable samples at 5-1000 Hz, so a step is 1 ms to 0.2 s)."""
    if t.shape[0] < 2:
        return t - t[0] if t.shape[0] else t
    step = float(np.median(np.abs(np.diff(t))))
    scale = 1e9 if step > 1e5 else 1e6 if step > 1e2 else 1e3 if step > 0.5 else 1.0
    out: Array = (t - t[0]) / scale
    return out


def parse_time(text: str) -> float:
    """One timestamp cell as a number: a plain number as is, a date-time as POSIX seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError as exc:
        raise ValueError(f"unreadable timestamp {text!r}") from exc
