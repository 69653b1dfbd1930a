"""The CNN comparison (`eldercare train falls --model cnn --compare-only`): it must see the very
windows the shipped trainer measures, and its numpy forward pass must be the convolution it
claims; the experiment itself needs PyTorch, which eldercare does not depend on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from detectors.falls import cnn_compare
from detectors.falls.datasets import Recording
from detectors.falls.training import rotation, window_table
from eldercare.cli import main as eldercare
from tests.test_falls_model import synthetic_fall, synthetic_walk, tiny_datasets  # noqa: F401

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _recording(subject: str, fall: bool, samples: np.ndarray, rate: float) -> Recording:
    return Recording(dataset="test", subject=subject, activity="F" if fall else "W",
                     trial="1", position="wrist", is_fall=fall, rate_hz=rate, samples=samples)


def test_the_cnn_sees_the_windows_the_trainer_measures_row_for_row() -> None:
    rng = np.random.default_rng(3)
    recs = [_recording(f"S{i}", i % 2 == 0, (synthetic_fall if i % 2 == 0 else synthetic_walk)
                       (rate, rng), rate) for i, rate in enumerate((25.0, 50.0, 100.0, 50.0))]
    table = window_table(recs, augment=True)
    raw = cnn_compare.raw_table(recs, augment=True)
    assert raw.x.shape == (table.x.shape[0], 3, cnn_compare.LENGTH)
    assert raw.x_augmented is not None and raw.x_augmented.shape == raw.x.shape
    # Whatever the device rate, the impact (the highest magnitude) sits at the same index;
    # along and across gravity split the magnitude.
    assert (raw.x[:, 0].argmax(axis=1) == cnn_compare.BEFORE).all()
    assert np.hypot(raw.x[:, 1], raw.x[:, 2]) == pytest.approx(raw.x[:, 0], abs=1e-4)
    assert not np.allclose(raw.x_augmented, raw.x)  # learned a second time, worn differently


def test_the_cnn_input_does_not_depend_on_how_the_device_is_worn() -> None:
    window = synthetic_fall(50.0, np.random.default_rng(6))
    turned = window @ rotation(np.array([0.9, -0.4, 2.0])).T
    assert cnn_compare.raw_window(turned, 50.0) == pytest.approx(
        cnn_compare.raw_window(window, 50.0), abs=1e-4)
    # Standing, the first second's gravity is straight down: all of it along, none across.
    x = cnn_compare.raw_window(window, 50.0)
    assert x[1, :25].mean() == pytest.approx(1.0, abs=0.05)
    # The watch keeps the device's axes (how the arm lies is a clue), with the magnitude.
    axes = cnn_compare.raw_window(window, 50.0, device_axes=True)
    assert axes.shape == (4, cnn_compare.LENGTH) and axes[3] == pytest.approx(x[0])


def test_a_short_window_repeats_its_edges_rather_than_inventing_a_signal() -> None:
    window = synthetic_fall(50.0, np.random.default_rng(4))
    peak = int(np.linalg.norm(window, axis=1).argmax())
    short = window[peak - 50:peak + 100]  # 1 s before the impact, 2 s after
    x = cnn_compare.raw_window(short, 50.0)
    assert x.shape == (3, cnn_compare.LENGTH)
    before = cnn_compare.BEFORE - 50
    assert (x[:, :before] == x[:, before:before + 1]).all()
    assert (x[:, cnn_compare.BEFORE + 100:] == x[:, cnn_compare.BEFORE + 99:
                                                 cnn_compare.BEFORE + 100]).all()


def test_the_numpy_forward_pass_is_the_strided_convolution_it_claims() -> None:
    rng = np.random.default_rng(5)
    weights = {}
    c_in = 4
    for i, (c_out, k) in enumerate(cnn_compare.CONV):
        weights[f"conv{i}.w"] = rng.normal(0, 0.3, (c_out, c_in, k))
        weights[f"conv{i}.b"] = rng.normal(0, 0.1, c_out)
        c_in = c_out
    weights["head.w"] = rng.normal(0, 0.3, 2 * cnn_compare.CONV[-1][0])
    weights["head.b"] = np.array([0.1])
    x = rng.normal(0, 1, (2, 4, cnn_compare.LENGTH)).astype(np.float32)

    def reference(h: np.ndarray) -> float:  # one window, written out loop by loop
        for i, (c_out, k) in enumerate(cnn_compare.CONV):
            w, b, pad = weights[f"conv{i}.w"], weights[f"conv{i}.b"], k // 2
            hp = np.pad(h, ((0, 0), (pad, pad)))
            n_out = (h.shape[1] + 2 * pad - k) // 2 + 1
            h = np.array([[max(0.0, float((w[o] * hp[:, 2 * t:2 * t + k]).sum() + b[o]))
                           for t in range(n_out)] for o in range(c_out)])
        z = float(np.concatenate([h.mean(axis=1), h.max(axis=1)]) @ weights["head.w"]
                  + weights["head.b"][0])
        return float(1.0 / (1.0 + np.exp(-z)))

    got = cnn_compare.cnn_forward(weights, x)
    assert got == pytest.approx([reference(x[0].astype(np.float64)),
                                 reference(x[1].astype(np.float64))], rel=1e-4)


def test_sensitivity_at_a_specificity_allows_only_that_many_false_alarms() -> None:
    is_fall = np.array([True, True, True, False, False, False, False])
    score = np.array([0.9, 0.5, 0.2, 0.6, 0.3, 0.1, 0.0])
    # Specificity 0.75 over four everyday recordings: one false alarm allowed (0.6), so the
    # threshold sits above 0.3 and catches the falls at 0.9 and 0.5.
    assert cnn_compare.sensitivity_at(is_fall, score, 0.75) == 2
    assert cnn_compare.sensitivity_at(is_fall, score, 1.0) == 1  # above 0.6: only 0.9
    assert cnn_compare.sensitivity_at(is_fall, score, 0.0) == 3


def test_only_the_trees_ship_the_cnn_is_a_comparison(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "FallAllD"
    data.mkdir()
    assert eldercare(["train", "falls", "--fallalld", str(data), "--model", "cnn"]) == 2
    assert "--compare-only" in capsys.readouterr().err
    assert eldercare(["train", "falls", "--fallalld", str(data), "--compare-only",
                      "--positions", "ankle"]) == 2
    assert "unknown position(s) ankle" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TORCH, reason="PyTorch is installed here")
def test_the_comparison_without_pytorch_says_what_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "FallAllD"
    data.mkdir()
    assert eldercare(["train", "falls", "--fallalld", str(data), "--model", "cnn",
                      "--compare-only"]) == 2
    assert "PyTorch" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_TORCH, reason="the comparison needs PyTorch (not a dependency)")
def test_the_comparison_runs_on_the_trainers_folds(
        tiny_datasets: tuple[Path, Path],  # noqa: F811 (the fixture imported above)
        capsys: pytest.CaptureFixture[str]) -> None:
    fad, mob = tiny_datasets
    assert eldercare(["train", "falls", "--fallalld", str(fad), "--mobifall", str(mob),
                      "--model", "cnn", "--compare-only", "--positions", "waist",
                      "--folds", "2", "--epochs", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    waist = report["positions"]["waist"]
    assert (waist["recordings"], waist["falls"]) == (40, 20)
    assert set(cnn_compare.MODELS) <= set(waist)
    # The trees' figures are the trainer's own on the same folds.
    assert waist["hgb"]["sensitivity"] == 1.0 and waist["hgb"]["specificity"] == 1.0
    assert waist["inference_ms"]["numpy"] < 50
