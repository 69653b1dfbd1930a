"""Signal helpers: resampling irregular device clocks and cutting device-style windows."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.falls.signal import angle_deg, impact_windows, magnitude, resample


def test_resample_averages_duplicate_timestamps_and_keeps_a_constant_signal() -> None:
    t = np.array([0.0, 0.0, 0.05, 0.1, 0.1, 0.15, 0.2])
    xyz = np.array([[0, 1, 0], [0, 1, 0.2], [0, 1, 0.1], [0, 1, 0.1], [0, 1, 0.1],
                    [0, 1, 0.1], [0, 1, 0.1]], dtype=float)
    out = resample(t, xyz, 20.0)
    assert out.shape == (5, 3)
    assert np.allclose(out[:, 2], 0.1)


def test_resample_from_200_hz_low_passes_before_decimating() -> None:
    t = np.arange(2000) / 200.0
    xyz = np.tile([0.0, 0.0, 1.0], (2000, 1))
    xyz[::2, 2] += 0.5  # 100 Hz ripple: must not alias into the 20 Hz signal
    out = resample(t, xyz, 20.0)
    assert abs(out.shape[0] - 200) <= 1
    assert np.allclose(out[5:-5, 2], 1.25, atol=0.03)


def test_resample_refuses_mismatched_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        resample(np.arange(3.0), np.zeros((4, 3)), 20.0)


def test_device_windows_are_cut_around_each_peak() -> None:
    xyz = np.tile([0.0, 0.0, 1.0], (400, 1))  # 20 s at 20 Hz
    xyz[100] = [0.0, 0.0, 3.0]
    xyz[290] = [0.0, 2.5, 0.0]
    windows = impact_windows(xyz, 20.0, 1.5, before_s=4.0, after_s=5.0)
    assert [first for first, _ in windows] == [20, 210]
    assert [len(w) for _, w in windows] == [181, 181]
    assert magnitude(windows[1][1]).max() == pytest.approx(2.5)
    assert impact_windows(np.tile([0.0, 0.0, 1.0], (50, 1)), 20.0, 1.5, 4.0, 5.0) == []


def test_angle_between_gravity_directions() -> None:
    assert angle_deg(np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])) == pytest.approx(90)
    assert angle_deg(np.zeros(3), np.array([1.0, 0.0, 0.0])) == 0.0
