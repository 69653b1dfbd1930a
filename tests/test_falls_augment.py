"""Training-only augmentation of the fall classifier: a window as a device worn a little
differently would have sent it (turned, its movement scaled), learned beside the window as
recorded; held-out subjects are judged on their windows as recorded."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.falls.datasets import Recording
from detectors.falls.impact_features import FEATURE_NAMES, impact_vector
from detectors.falls.training import rotation, window_table, worn_differently
from tests.test_falls_model import synthetic_fall, synthetic_walk


def test_a_turn_is_a_rotation() -> None:
    quarter = rotation(np.array([0.0, 0.0, np.pi / 2]))
    assert quarter @ np.array([1.0, 0.0, 0.0]) == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    r = rotation(np.array([0.3, -0.2, 0.5]))
    assert r @ r.T == pytest.approx(np.eye(3), abs=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    assert np.array_equal(rotation(np.zeros(3)), np.eye(3))


def test_a_turned_watch_feels_the_same_impact_and_a_looser_one_a_scaled_movement() -> None:
    window = synthetic_fall(50.0, np.random.default_rng(1))
    turned = worn_differently(window, 50.0, np.array([0.4, 0.1, -0.3]), 1.0)
    assert np.linalg.norm(turned, axis=1) == pytest.approx(np.linalg.norm(window, axis=1))
    peak = FEATURE_NAMES.index("peak_g")
    assert impact_vector(turned, 50.0)[0][peak] == pytest.approx(
        impact_vector(window, 50.0)[0][peak])
    gravity = window[:50].mean(axis=0)
    scaled = worn_differently(window, 50.0, np.zeros(3), 1.2)
    assert scaled - gravity == pytest.approx(1.2 * (window - gravity))


def _recording(subject: str, fall: bool, samples: np.ndarray) -> Recording:
    return Recording(dataset="test", subject=subject, activity="F" if fall else "W",
                     trial="1", position="wrist", is_fall=fall, rate_hz=50.0, samples=samples)


def test_augmented_windows_are_learned_beside_the_recorded_ones_only_when_asked() -> None:
    rng = np.random.default_rng(2)
    recs = [_recording("S1", True, synthetic_fall(50.0, rng)),
            _recording("S1", False, synthetic_walk(50.0, rng))]
    plain, augmented = window_table(recs), window_table(recs, augment=True)
    assert np.array_equal(plain.x, augmented.x, equal_nan=True)  # judged as recorded
    everything = np.ones(len(plain.rec), dtype=bool)
    x, y = plain.training_rows(everything)
    x2, y2 = augmented.training_rows(everything)
    assert x2.shape[0] == 2 * x.shape[0] and list(y2) == list(y) * 2
    assert not np.array_equal(x2[x.shape[0]:], x, equal_nan=True)  # the copies differ
    assert window_table(recs, augment=True).x_augmented == pytest.approx(
        augmented.x_augmented, nan_ok=True)  # seeded: the same files, the same copies
