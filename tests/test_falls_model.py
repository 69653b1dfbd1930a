"""The learned fall classifier: the shipped model file loads and judges synthetic windows
sensibly at any device rate; a broken model file is a clear error; `eldercare train falls` runs
end to end on a tiny dataset written here in FallAllD's and MobiFall's real formats, and the
detector alerts with the model it wrote; `eldercare eval --dataset ... --json` has its shape."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from detectors.falls import FallDetector, FallParams
from detectors.falls.classifier import SHIPPED_MODEL, load_models, shipped_models
from detectors.falls.datasets import fallalld, mobifall
from detectors.falls.impact_features import FEATURE_NAMES, impact_vector
from eldercare.cli import main as eldercare
from tests.test_falls_datasets import write_umafall
from tests.test_falls_detector import T0, accel, fall_window, run

UPRIGHT = np.array([0.0, 1.0, 0.0])
LYING = np.array([1.0, 0.0, 0.0])


def _walk(seconds: float, rate: float, rng: np.random.Generator, swing: float) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return UPRIGHT + np.stack([swing * 0.3 * np.cos(2 * np.pi * 0.9 * t),
                               swing * np.sin(2 * np.pi * 1.8 * t), 0 * t], axis=1) \
        + rng.normal(0.0, 0.02, (t.size, 3))


def synthetic_fall(rate: float, rng: np.random.Generator) -> np.ndarray:
    """A tumble: walking, a turning descent with a free-fall dip, a quarter second of impacts
    (3-5 g), a second of settling, then lying still turned 90 degrees."""
    n = round(0.6 * rate)
    turn = np.linspace(0.0, np.pi / 2, n)
    descent = np.stack([np.sin(turn), np.cos(turn), 0 * turn], axis=1) \
        * np.linspace(1.0, 0.3, n)[:, None]
    impact = rng.normal(0.0, 2.0, (max(2, round(0.25 * rate)), 3)) + np.array([2.5, 1.0, 0.5])
    m = round(1.0 * rate)
    settle = LYING + rng.normal(0.0, 0.3, (m, 3)) * np.linspace(1.0, 0.1, m)[:, None]
    lying = LYING + rng.normal(0.0, 0.03, (round(5.0 * rate), 3))
    return np.vstack([_walk(4.0, rate, rng, 0.3), descent, impact, settle, lying])


def synthetic_walk(rate: float, rng: np.random.Generator) -> np.ndarray:
    """Brisk walking whose strides peak above the device trigger (about 1.7 g)."""
    return _walk(10.0, rate, rng, 0.75)


def test_the_shipped_model_has_every_position_and_is_small() -> None:
    models = shipped_models()
    assert set(models) == {"wrist", "waist", "neck"}
    assert SHIPPED_MODEL.stat().st_size < 5_000_000
    for m in models.values():
        assert 0.0 < m.threshold < 1.0 and m.roots.size > 10


@pytest.mark.parametrize("rate", [25.0, 50.0, 100.0])
def test_the_shipped_model_tells_a_fall_from_walking_at_the_devices_own_rate(rate: float
                                                                            ) -> None:
    rng = np.random.default_rng(3)
    for position, model in shipped_models().items():
        fall = synthetic_fall(rate, rng)
        fall_p, offset = model.judge(fall[-round(9 * rate):], rate)
        walk_p, _ = model.judge(synthetic_walk(rate, rng)[:round(9 * rate)], rate)
        assert fall_p >= model.threshold, (position, rate, fall_p)
        assert walk_p < model.threshold, (position, rate, walk_p)
        assert 2.5 < offset < 3.2  # the impact (2.75-3 s in), from the window's first sample


def test_features_of_a_short_window_are_missing_not_invented() -> None:
    x, _ = impact_vector(np.vstack([np.tile(UPRIGHT, (10, 1)), [[2.5, 2.0, 0.0]]]), 50.0)
    assert x.shape == (len(FEATURE_NAMES),)
    assert np.isnan(x[FEATURE_NAMES.index("turn_deg")])  # nothing after the impact
    for model in shipped_models().values():
        assert 0.0 <= model.probability(x) <= 1.0


def test_a_broken_model_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read fall model"):
        load_models(bad)
    doc = json.loads(SHIPPED_MODEL.read_text())
    doc["positions"]["wrist"]["features"] = ["peak_g"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="features differ"):
        load_models(bad)
    doc = json.loads(SHIPPED_MODEL.read_text())
    doc["positions"]["waist"]["trees"][0]["left"][0] = 10_000
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="outside itself"):
        load_models(bad)
    bad.write_text(json.dumps({"format": "pickle"}))
    with pytest.raises(ValueError, match="not a eldercare-falls-gbdt/1"):
        FallDetector(FallParams(model_file=str(bad)))


def test_the_detector_judges_watch_windows_with_the_wrist_model() -> None:
    rng = np.random.default_rng(5)
    window = synthetic_fall(25.0, rng)[-round(9 * 25.0):]
    event = accel(window, T0, "w1", device_kind="smart_watch", device="watch-1")
    event = event.model_copy(update={"data": {**event.data, "rate_hz": 25.0}})
    raised = run(FallDetector(), [event], T0 + timedelta(seconds=60))
    assert len(raised) == 1
    evidence = raised[0][1].evidence[0]
    assert evidence["judged_by"] == "model:wrist"
    assert evidence["fall_probability"] >= shipped_models()["wrist"].threshold
    walking = accel(synthetic_walk(25.0, rng), T0, "w2", device_kind="smart_watch")
    walking = walking.model_copy(update={"data": {**walking.data, "rate_hz": 25.0}})
    assert run(FallDetector(), [walking], T0 + timedelta(seconds=60)) == []


def write_fallalld(folder: Path, subject: int, device: int, activity: int, trial: int,
                   xyz: np.ndarray) -> None:
    """A FallAllD accelerometer file: raw counts (0.244 mg each) at 238 Hz."""
    counts = np.round(xyz / fallalld.G_PER_COUNT).astype(int)
    (folder / f"S{subject:02d}_D{device}_A{activity:03d}_T{trial:02d}_A.dat").write_text(
        "".join(f"{x},{y},{z}\n" for x, y, z in counts))


def write_mobifall(folder: Path, code: str, subject: int, trial: int, xyz: np.ndarray,
                   rate: float = 87.0, age: int = 70) -> Path:
    """A MobiFall v2.0 acc file: `#` header with the age, @DATA, ns timestamps, m/s^2."""
    kind = "FALLS" if code in mobifall.FALLS else "ADL"
    d = folder / f"sub{subject}" / kind / code
    d.mkdir(parents=True, exist_ok=True)
    t0 = 2318482693000
    rows = "".join(f"{t0 + round(i * 1e9 / rate)}, {x * 9.80665}, {y * 9.80665}, "
                   f"{z * 9.80665}\n" for i, (x, y, z) in enumerate(xyz))
    path = d / f"{code}_acc_{subject}_{trial}.txt"
    path.write_text("#Acceleration force along the x y z axes (including gravity).\n"
                    "#timestamp(ns),x,y,z(m/s^2)\n#Activity: 10 - FOL - Forward-lying - 10s\n"
                    f"#Subject ID: {subject}\n#Age: {age}\n#Gender: Male\n\n@DATA\n" + rows)
    return path


def test_mobifall_loads_its_real_format_in_g_with_the_age(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_mobifall(tmp_path, "FOL", 3, 2, synthetic_fall(87.0, rng))
    write_mobifall(tmp_path, "WAL", 3, 1, np.tile(UPRIGHT, (870, 1)), age=26)
    (tmp_path / "sub3" / "ADL" / "WAL" / "WAL_gyro_3_1.txt").write_text("@DATA\n1, 2, 3, 4\n")
    recs = sorted(mobifall.load(tmp_path, rate_hz=50.0), key=lambda r: r.activity)
    assert [(r.activity, r.subject, r.position, r.is_fall, r.age) for r in recs] == [
        ("FOL", "M03", "thigh", True, 70), ("WAL", "M03", "thigh", False, 26)]
    assert abs(recs[1].samples.shape[0] - 500) <= 1
    assert np.allclose(recs[1].samples, UPRIGHT, atol=1e-6)
    assert list(mobifall.load(tmp_path, positions=["wrist"])) == []
    bad = write_mobifall(tmp_path, "JOG", 4, 1, np.tile(UPRIGHT, (10, 1)))
    bad.write_text(bad.read_text().replace("@DATA\n", "@DATA\n1, 2\n"))
    with pytest.raises(ValueError, match="JOG_acc_4_1"):
        list(mobifall.load(tmp_path))


@pytest.fixture
def tiny_datasets(tmp_path: Path) -> tuple[Path, Path]:
    """Six FallAllD subjects (wrist and waist: 3 falls, 3 brisk walks each) and two MobiFall
    subjects, all synthetic."""
    rng = np.random.default_rng(7)
    fad, mob = tmp_path / "FallAllD", tmp_path / "mobifall"
    fad.mkdir()
    for s in range(1, 7):
        for device in (2, 3):
            for trial in range(1, 4):
                write_fallalld(fad, s, device, 101, trial, synthetic_fall(238.0, rng))
                write_fallalld(fad, s, device, 13, trial, synthetic_walk(238.0, rng))
    for s in (1, 2):
        write_mobifall(mob, "FOL", s, 1, synthetic_fall(87.0, rng))
        write_mobifall(mob, "WAL", s, 1, synthetic_walk(87.0, rng))
    return fad, mob


def test_train_falls_runs_end_to_end_and_the_detector_uses_its_model(
        tiny_datasets: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fad, mob = tiny_datasets
    out = tmp_path / "model.json"
    assert eldercare(["train", "falls", "--fallalld", str(fad), "--mobifall", str(mob),
                      "--out", str(out), "--folds", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["positions"]) == {"wrist", "waist"}  # no neck data: no neck model
    waist = report["positions"]["waist"]
    assert waist["datasets"] == ["fallalld", "mobifall"] and waist["subjects"] == 8
    # Watches learn from windows turned, scaled and stretched a little too; canes do not.
    assert report["positions"]["wrist"]["augmented"] == {
        "turn_rad": 0.35, "scale": [0.8, 1.2], "stretch": [0.85, 1.15]}
    assert waist["augmented"] is None
    assert sum(len(f) for f in waist["folds"]) == 8  # every subject held out exactly once
    cv = waist["cross_validated"]["all"]
    assert cv["recordings"] == 40 and cv["falls"] == 20
    assert cv["sensitivity"] == 1.0 and cv["specificity"] == 1.0
    # Each fold's model inside the streaming detector, on its held-out subjects.
    replayed = waist["detector_held_out"]
    assert (replayed["recordings"], replayed["falls"]) == (40, 20)
    assert replayed["sensitivity_lying"] == 1.0 and replayed["specificity"] == 1.0
    assert replayed["everyday_life"]["subjects"] == 8
    assert replayed["everyday_life"]["false_falls_per_elder_day"] == 0.0
    assert set(load_models(out)) == {"wrist", "waist"}
    first = out.read_bytes()
    assert eldercare(["train", "falls", "--fallalld", str(fad), "--mobifall", str(mob),
                      "--out", str(out), "--folds", "2"]) == 0
    assert out.read_bytes() == first  # fixed seeds: the same files give the same model
    detector = FallDetector(FallParams(model_file=str(out)))
    raised = run(detector, [accel(fall_window(), T0, "w1")], T0 + timedelta(seconds=60))
    assert [a.evidence[0]["judged_by"] for _, a in raised] == ["model:waist"]


def test_train_falls_without_data_is_a_clear_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert eldercare(["train", "falls"]) == 2
    assert "--fallalld" in capsys.readouterr().err
    assert eldercare(["train", "falls", "--fallalld", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_scores_the_shipped_detector_per_position_as_json(
        tiny_datasets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, mob = tiny_datasets
    assert eldercare(["eval", "--dataset", "mobifall", str(mob), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tuned"] is False and result["recordings"] == 4
    thigh = result["positions"]["thigh"]
    for key in ("recordings", "falls", "sensitivity", "specificity", "sensitivity_ci95",
                "specificity_ci95", "classic_rule", "everyday_life"):
        assert key in thigh
    assert (thigh["recordings"], thigh["falls"]) == (4, 2)
    assert thigh["elders"]["recordings"] == 4  # every synthetic subject is 70
    assert thigh["everyday_life"]["subjects"] == 2
    assert thigh["everyday_life"]["false_falls_per_elder_day"] is not None
    assert eldercare(["eval", "--dataset", "mobifall", str(mob)]) == 0
    assert "| thigh |" in capsys.readouterr().out


def test_train_falls_pools_umafall_into_the_waist_but_not_its_20_hz_wrist(
        tiny_datasets: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fad, _ = tiny_datasets
    uma = tmp_path / "UMAFall"
    uma.mkdir()
    for subject in (1, 2):  # phone in the pocket (thigh) at 200 Hz, wrist SensorTag at 20 Hz
        write_umafall(uma, subject, "Fall", "forwardFall", 1, impact_at=4.0)
        write_umafall(uma, subject, "ADL", "Walking", 1)
    assert eldercare(["train", "falls", "--fallalld", str(fad), "--umafall", str(uma),
                      "--out", str(tmp_path / "model.json"), "--folds", "2", "--no-replay",
                      "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["positions"]
    assert report["wrist"]["datasets"] == ["fallalld"]
    assert report["wrist"]["recordings"] == 36  # FallAllD's only: UMAFall's wrist left out
    assert report["waist"]["datasets"] == ["fallalld", "umafall"]
    assert "detector_held_out" not in report["waist"]
