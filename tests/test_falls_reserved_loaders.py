"""Loaders for the datasets reserved for independent evaluation (WEDA-FALL, SmartFallMM), on
small files written here in each dataset's published format (no third-party data): any subset
of files, subjects and devices loads, units and clocks are converted, elders are marked, and a
bad file is a clear error or a skipped file with its reason."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from detectors.falls.datasets import smartfallmm, wedafall
from detectors.falls.evaluate import evaluate_dataset
from tests.test_falls_model import synthetic_fall, synthetic_walk

G = 9.80665


def write_weda(root: Path, rate: int, code: str, user: int, trial: int, xyz: np.ndarray,
               mps2: bool = True) -> Path:
    """`root/<rate>Hz/<code>/U<user>_R<trial>_accel.csv` with the dataset's header row, time
    in seconds and accelerations in m/s^2 (the Fitbit's units)."""
    folder = root / f"{rate}Hz" / code
    folder.mkdir(parents=True, exist_ok=True)
    scale = G if mps2 else 1.0
    rows = [f"{i / rate:.4f},{x * scale:.5f},{y * scale:.5f},{z * scale:.5f}"
            for i, (x, y, z) in enumerate(xyz)]
    path = folder / f"U{user:02d}_R{trial:02d}_accel.csv"
    path.write_text("accel_time_list,accel_x_list,accel_y_list,accel_z_list\n"
                    + "\n".join(rows) + "\n")
    return path


def test_wedafall_reads_the_fastest_rate_folder_in_g_and_marks_elders(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "dataset"
    write_weda(root, 50, "F01", 3, 2, synthetic_fall(50.0, rng))
    write_weda(root, 25, "F01", 3, 2, synthetic_fall(25.0, rng))  # the same trial, resampled
    write_weda(root, 50, "D01", 22, 1, np.tile([0.0, 0.0, 1.0], (500, 1)))
    (root / "50Hz" / "F01" / "U03_R02_gyro.csv").write_text("gyro_time_list,x,y,z\n0,1,2,3\n")
    (root / "50Hz" / "F01" / "U03_R02_vertical_accel.csv").write_text("t,x,y,z\n0,1,2,3\n")
    (root / "fall_timestamps.csv").write_text("filename,start_time,end_time\n")
    recs = sorted(wedafall.load(tmp_path, rate_hz=25.0), key=lambda r: r.subject)
    assert [(r.subject, r.activity, r.trial, r.position, r.is_fall, r.age, r.elder)
            for r in recs] == [("U03", "F01", "02", "wrist", True, 20, False),
                               ("U22", "D01", "01", "wrist", False, 85, True)]
    assert abs(recs[1].samples.shape[0] - 250) <= 1  # 10 s of 50 Hz at 25 Hz
    assert np.allclose(recs[1].samples, [0.0, 0.0, 1.0], atol=1e-3)  # m/s^2 -> g
    assert list(wedafall.load(tmp_path, positions=["waist"])) == []
    # One rate folder given directly, or one file, loads too.
    assert [r.subject for r in wedafall.load(root / "25Hz")] == ["U03"]
    one = root / "50Hz" / "D01" / "U22_R01_accel.csv"
    assert [r.subject for r in wedafall.load(one)] == ["U22"]


def test_wedafall_bad_file_is_a_clear_error_or_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "50Hz" / "D04"
    folder.mkdir(parents=True)
    (folder / "U01_R01_accel.csv").write_text("accel_time_list,accel_x_list,accel_y_list,"
                                              "accel_z_list\n0,1,2,x\n0.02,1,2,3\n")
    with pytest.raises(ValueError, match=r"U01_R01_accel\.csv"):
        list(wedafall.load(tmp_path))
    (folder / "U01_R01_accel.csv").write_text("when,a,b\n0,1,2\n0.02,1,2\n")
    skipped: list[str] = []
    assert list(wedafall.load(tmp_path, skipped=skipped)) == []
    assert len(skipped) == 1 and "no time column" in skipped[0]


def test_eval_scores_the_shipped_detector_on_wedafall_with_elder_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for user in (1, 2):
        write_weda(tmp_path, 50, "F04", user, 1, synthetic_fall(50.0, rng))
        write_weda(tmp_path, 50, "D01", user, 1, synthetic_walk(50.0, rng))
    write_weda(tmp_path, 50, "D01", 25, 1, synthetic_walk(50.0, rng))
    result = evaluate_dataset("wedafall", tmp_path)
    assert result["tuned"] is False
    wrist = result["positions"]["wrist"]
    assert (wrist["recordings"], wrist["falls"]) == (5, 2)
    assert wrist["elders"]["recordings"] == 1 and wrist["elders"]["falls"] == 0


def _epoch_ms(i: int, rate: float) -> int:
    return 1_700_000_000_000 + round(1000 * i / rate)


def write_smartfall(root: Path, group: str, device: str, name: str, xyz: np.ndarray,
                    rate: float, clock: str = "ms") -> Path:
    """A headerless SmartFallMM file: watch/phone rows `time,x,y,z` (m/s^2), Meta rows
    `epoch ms,time,elapsed s,x,y,z` (g)."""
    folder = root / group / "Accelerometer" / device
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2023, 7, 11, 10, 0, 0)
    rows = []
    for i, (x, y, z) in enumerate(xyz):
        if device.lower().startswith("meta"):
            stamp = (start + timedelta(seconds=i / rate)).strftime("%H:%M:%S.%f")
            rows.append(f"{_epoch_ms(i, rate)},{stamp},{i / rate:.3f},{x:.4f},{y:.4f},{z:.4f}")
        else:
            t = (str(_epoch_ms(i, rate)) if clock == "ms" else
                 (start + timedelta(seconds=i / rate)).isoformat(sep=" "))
            rows.append(f"{t},{x * G:.4f},{y * G:.4f},{z * G:.4f}")
    path = folder / name
    path.write_text("\n".join(rows) + "\n")
    return path


def test_smartfallmm_reads_each_device_folder_as_its_position(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    still = np.tile([0.0, -1.0, 0.0], (320, 1))  # 10 s at 32 Hz
    write_smartfall(tmp_path, "young", "Watch", "S29A10T01.csv", synthetic_fall(32.0, rng), 32.0)
    write_smartfall(tmp_path, "young", "Meta_hip", "S29A10T01.csv",
                    np.tile([0.0, 0.0, 1.0], (500, 1)), 50.0)
    write_smartfall(tmp_path, "Old Data", "Phone", "S02A01T03.csv", still, 32.0,
                    clock="datetime")
    gyro = tmp_path / "young" / "Gyroscope" / "Watch"
    gyro.mkdir(parents=True)
    (gyro / "S29A10T01.csv").write_text("1,2,3,4\n5,6,7,8\n")
    (tmp_path / "young" / "Skeleton").mkdir()
    (tmp_path / "young" / "Skeleton" / "S29A10T01.csv").write_text(",".join("0" * 96) + "\n")
    recs = sorted(smartfallmm.load(tmp_path, rate_hz=25.0), key=lambda r: r.key)
    assert [(r.subject, r.activity, r.trial, r.position, r.is_fall, r.elder) for r in recs] == [
        ("old/S02", "A01", "T03-phone", "thigh", False, True),
        ("young/S29", "A10", "T01-meta_hip", "waist", True, False),
        ("young/S29", "A10", "T01-watch", "wrist", True, False)]
    phone, hip = recs[0], recs[1]
    assert abs(phone.samples.shape[0] - 250) <= 1  # 10 s (date-time clock) at 25 Hz
    assert np.allclose(phone.samples, [0.0, -1.0, 0.0], atol=1e-3)  # m/s^2 -> g
    assert abs(hip.samples.shape[0] - 250) <= 1  # 10 s of 50 Hz (elapsed seconds) at 25 Hz
    assert np.allclose(hip.samples, [0.0, 0.0, 1.0], atol=1e-3)  # already in g
    assert [r.position for r in smartfallmm.load(tmp_path, positions=["wrist"])] == ["wrist"]


def test_smartfallmm_bad_file_is_a_clear_error_or_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "young" / "Accelerometer" / "Watch"
    folder.mkdir(parents=True)
    (folder / "S30A09T02.csv").write_text("0,1,2,3\n31,1,2\n")
    with pytest.raises(ValueError, match=r"S30A09T02\.csv: expected 4"):
        list(smartfallmm.load(tmp_path))
    (folder / "S30A09T02.csv").write_text("noon,1,2,3\nlater,1,2,3\n")
    skipped: list[str] = []
    assert list(smartfallmm.load(tmp_path, skipped=skipped)) == []
    assert len(skipped) == 1 and "unreadable timestamp 'noon'" in skipped[0]
