"""What a device does before the server sees anything: it sends a window when the magnitude
crosses a low trigger, from BEFORE_S before the peak to AFTER_S after it. Training, evaluation
and the bench cut recordings into the same windows."""

from __future__ import annotations

from detectors.falls.signal import Array, impact_windows

TRIGGER_G = 1.5
BEFORE_S = 4.0
AFTER_S = 5.0
# The device rate the headline figures are given at (watches and canes send 25-100 Hz).
DEVICE_RATE_HZ = 50.0


def device_windows(samples: Array, rate_hz: float) -> list[tuple[int, Array]]:
    """The windows a device would send from a recording (first sample index, samples)."""
    return impact_windows(samples, rate_hz, TRIGGER_G, BEFORE_S, AFTER_S)
