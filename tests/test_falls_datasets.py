"""Dataset loaders on small files written here in each dataset's real format (no third-party
data): any subset of files loads, units are converted and recordings resampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.falls.datasets import fallalld, sisfall, umafall
from detectors.falls.evaluate import evaluate_dataset, format_report, main

UMA_HEADER = "TimeStamp;Sample No;X-Axis;Y-Axis;Z-Axis;Sensor_Type;Sensor_ID\n"


def _uma_rows(sensor_id: int, hz: float, seconds: float, xyz: tuple[float, float, float],
              sensor_type: int = 0, trailing: str = "") -> list[str]:
    n = round(hz * seconds)
    return [f"{round(1000 * i / hz)};{i + 1};{xyz[0]};{xyz[1]};{xyz[2]};{sensor_type};"
            f"{sensor_id}{trailing}\n" for i in range(n)]


def write_umafall(folder: Path, subject: int, kind: str, activity: str, trial: int,
                  header: list[str] | None = None, impact_at: float | None = None) -> Path:
    """A UMAFall-format file: phone (id 0) at 200 Hz, wrist SensorTag (id 3) at 20 Hz with the
    stray trailing ';' some files have, gyroscope rows to ignore."""
    name = f"UMAFall_Subject_{subject:02d}_{kind}_{activity}_{trial}_2016-06-13_20-51-32.csv"
    rows = _uma_rows(0, 200.0, 10.0, (0.0, 1.0, 0.0)) + _uma_rows(3, 20.0, 10.0, (0.0, 0.0, 1.0),
                                                                  trailing=";")
    rows += _uma_rows(3, 20.0, 10.0, (5.0, 5.0, 5.0), sensor_type=1)
    if impact_at is not None:  # a fall seen by the wrist: impact, then lying turned
        wrist = [r for r in rows if r.endswith(";0;3;\n")]
        for i, r in enumerate(wrist):
            t = i / 20.0
            xyz = (3.5, 0.0, 0.5) if abs(t - impact_at) < 0.01 else \
                (1.0, 0.0, 0.0) if t > impact_at else (0.0, 0.0, 1.0)
            rows[rows.index(r)] = f"{round(1000 * t)};{i};{xyz[0]};{xyz[1]};{xyz[2]};0;3;\n"
    path = folder / name
    path.write_text("".join(header or []) + UMA_HEADER + "".join(rows))
    return path


def test_umafall_loads_positions_resamples_and_ignores_other_sensors(tmp_path: Path) -> None:
    write_umafall(tmp_path, 2, "Fall", "backwardFall", 1)
    recs = {r.position: r for r in umafall.load(tmp_path, rate_hz=20.0)}
    assert set(recs) == {"thigh", "wrist"}  # ids 0 and 3; gyroscope rows ignored
    phone = recs["thigh"]
    assert phone.subject == "S02" and phone.activity == "backwardFall" and phone.trial == "1"
    assert phone.is_fall and phone.rate_hz == 20.0
    assert abs(phone.samples.shape[0] - 200) <= 1  # 10 s of 200 Hz data at 20 Hz
    assert np.allclose(phone.samples, [0.0, 1.0, 0.0])
    assert np.allclose(recs["wrist"].samples, [0.0, 0.0, 1.0])
    faster = next(umafall.load(tmp_path, rate_hz=50.0, positions=["thigh"]))
    assert abs(faster.samples.shape[0] - 500) <= 1


def test_umafall_accepts_any_subset_and_skips_what_is_not_umafall(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write_umafall(tmp_path / "sub", 7, "ADL", "Sitting_GettingUpOnAChair", 3)
    (tmp_path / "notes.csv").write_text("a;b\n1;2\n")
    recs = list(umafall.load(tmp_path, positions=["wrist"]))
    assert [(r.subject, r.activity, r.position, r.is_fall) for r in recs] == [
        ("S07", "Sitting_GettingUpOnAChair", "wrist", False)]


def test_umafall_header_naming_positions_wins(tmp_path: Path) -> None:
    header = ["% Universidad de Malaga\n", "% Sensor_ID: 3; Position: WAIST\n"]
    write_umafall(tmp_path, 1, "ADL", "Walking", 1, header=header)
    assert {r.position for r in umafall.load(tmp_path)} == {"thigh", "waist"}


def test_umafall_mangled_file_is_an_error_or_skipped_with_reason(tmp_path: Path) -> None:
    bad = tmp_path / "UMAFall_Subject_13_ADL_Bending_1_2016-06-06_16-37-56.csv"
    bad.write_text(UMA_HEADER + "102;1;1.012.598.156;0.1;0.2;0;0\n")
    with pytest.raises(ValueError, match="Bending_1"):
        list(umafall.load(tmp_path))
    skipped: list[str] = []
    assert list(umafall.load(tmp_path, skipped=skipped)) == []
    assert len(skipped) == 1 and "1.012.598.156" in skipped[0]


def test_fallalld_converts_counts_to_g_and_resamples(tmp_path: Path) -> None:
    one_g = round(1 / fallalld.G_PER_COUNT)
    rows = "".join(f"0,{one_g},0\n" for _ in range(238 * 5))  # 5 s at 238 Hz
    (tmp_path / "S03_D2_A101_T02_A.dat").write_text(rows)
    (tmp_path / "S03_D2_A101_T02_G.dat").write_text(rows)  # gyroscope: not ours
    (tmp_path / "S04_D3_A013_T01_A.dat").write_text(rows)
    recs = sorted(fallalld.load(tmp_path, rate_hz=20.0), key=lambda r: r.subject)
    assert [(r.subject, r.position, r.activity, r.is_fall) for r in recs] == [
        ("S03", "wrist", "A101", True), ("S04", "waist", "A013", False)]
    assert abs(recs[0].samples.shape[0] - 100) <= 1
    assert np.allclose(recs[0].samples, [0.0, 1.0, 0.0], atol=1e-3)
    assert [r.subject for r in fallalld.load(tmp_path, positions=["waist"])] == ["S04"]


def test_fallalld_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "S01_D1_A001_T01_A.dat").write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="expected 3 columns"):
        list(fallalld.load(tmp_path))


def test_sisfall_reads_the_adxl345_columns_in_g_and_marks_elders(tmp_path: Path) -> None:
    one_g = round(1 / sisfall.G_PER_COUNT)  # 256 counts
    line = f"0, {-one_g}, 0, 10, 20, 30, 0, -4096, 0;\n"  # MMA8451Q and gyro columns ignored
    (tmp_path / "SE06").mkdir()
    (tmp_path / "SE06" / "F05_SE06_R01.txt").write_text(line * 400)  # 2 s at 200 Hz
    (tmp_path / "D07_SA01_R03.txt").write_text(line * 400)
    (tmp_path / "Readme.txt").write_text("SisFall readme\n")
    recs = sorted(sisfall.load(tmp_path, rate_hz=50.0), key=lambda r: r.subject)
    assert [(r.subject, r.activity, r.trial, r.position, r.is_fall, r.elder) for r in recs] == [
        ("SA01", "D07", "03", "waist", False, False), ("SE06", "F05", "01", "waist", True, True)]
    assert abs(recs[0].samples.shape[0] - 100) <= 1
    assert np.allclose(recs[0].samples, [0.0, -1.0, 0.0], atol=1e-3)
    (tmp_path / "F01_SA02_R01.txt").write_text("1, 2, 3;\n1, 2, 3;\n")
    with pytest.raises(ValueError, match="expected 9 columns"):
        list(sisfall.load(tmp_path))


def test_evaluation_scores_the_shipped_detector_on_every_recording(tmp_path: Path) -> None:
    for subject in (1, 2, 3):
        write_umafall(tmp_path, subject, "Fall", "forwardFall", 1, impact_at=4.0)
        write_umafall(tmp_path, subject, "ADL", "Walking", 1)
    result = evaluate_dataset("umafall", tmp_path)
    assert result["tuned"] is False and result["subjects"] == ["S01", "S02", "S03"]
    wrist = result["positions"]["wrist"]
    assert wrist["device_proxy"] == "smart_watch"
    assert (wrist["recordings"], wrist["falls"]) == (6, 3)  # every recording, none held back
    assert wrist["specificity"] == 1.0 and wrist["elders"] is None  # UMAFall files: no ages
    assert "| wrist | smart_watch | 6 (3) |" in format_report(result)
    assert main(["--dataset", "fallalld", str(tmp_path / "missing")]) == 2


def test_tuning_is_an_explicit_option_that_splits_by_subject(tmp_path: Path) -> None:
    for subject in (1, 2, 3):
        write_umafall(tmp_path, subject, "Fall", "forwardFall", 1, impact_at=4.0)
        write_umafall(tmp_path, subject, "ADL", "Walking", 1)
    result = evaluate_dataset("umafall", tmp_path, rate_hz=20.0, tune=True)
    train, test = result["subjects"]["train"], result["subjects"]["test"]
    assert set(train) | set(test) == {"S01", "S02", "S03"} and not set(train) & set(test)
    wrist = result["positions"]["wrist"]
    assert wrist["test"]["sensitivity"] == 1.0 and wrist["test"]["specificity"] == 1.0
    assert "| wrist | smart_watch | held-out" in format_report(result)
