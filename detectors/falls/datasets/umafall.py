"""UMAFall (Casilari et al., University of Malaga, 2017): loader for its CSV files.

Files are named `UMAFall_Subject_<NN>_<ADL|Fall>_<activity>_<trial>_<date>_<time>.csv`; rows are
`TimeStamp;Sample No;X-Axis;Y-Axis;Z-Axis;Sensor_Type;Sensor_ID` with the timestamp in ms,
acceleration in g, Sensor_Type 0 = accelerometer (1 gyroscope, 2 magnetometer). Lines starting
with `%` are the dataset's header; when they name a position for a sensor id we use it, else
the dataset's documented mapping below. Any subset of the files (subjects, activities) loads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from detectors.falls.datasets import Recording
from detectors.falls.signal import resample

NAME = re.compile(
    r"UMAFall_Subject_(?P<subject>\d+)_(?P<kind>ADL|Fall)_(?P<activity>.+)_(?P<trial>\d+)"
    r"_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}\.csv$",
    re.IGNORECASE,
)
# Sensor id -> body position as documented by the dataset (id 0 is the smartphone in the right
# trouser pocket: a thigh position; ids 1-4 are SensorTags).
DEFAULT_POSITIONS = {0: "thigh", 1: "chest", 2: "waist", 3: "wrist", 4: "ankle"}
_HEADER_NAMES = {"rightpocket": "thigh", "pocket": "thigh", "thigh": "thigh", "chest": "chest",
                 "waist": "waist", "wrist": "wrist", "ankle": "ankle"}
_HEADER_POSITION = re.compile(
    r"sensor[ _]?id\D{0,10}(\d+)\W+.*?\b(rightpocket|pocket|thigh|chest|waist|wrist|ankle)\b",
    re.IGNORECASE,
)
ACCELEROMETER = 0


def find_files(path: Path) -> list[Path]:
    """UMAFall CSV files under `path` (a folder, searched recursively, or one file)."""
    if path.is_file():
        return [path] if NAME.search(path.name) else []
    return sorted(p for p in path.rglob("*.csv") if NAME.search(p.name))


def load(path: Path, rate_hz: float = 20.0, positions: Iterable[str] | None = None,
         skipped: list[str] | None = None) -> Iterator[Recording]:
    """Every recording (one per file and sensor position) under `path`, resampled to `rate_hz`.

    An unreadable file raises ValueError, or, when `skipped` is given, is listed there with the
    reason and left out (public copies of the dataset contain a few spreadsheet-mangled files)."""
    wanted = set(positions) if positions is not None else None
    for file in find_files(path):
        try:
            recordings = list(load_file(file, rate_hz, wanted))
        except ValueError as exc:
            if skipped is None:
                raise
            skipped.append(str(exc))
            continue
        yield from recordings


def load_file(file: Path, rate_hz: float = 20.0, positions: set[str] | None = None
              ) -> Iterator[Recording]:
    """The recordings of one UMAFall file, one per sensor position present in it."""
    match = NAME.search(file.name)
    if match is None:
        raise ValueError(f"{file.name}: not a UMAFall file name")
    header: list[str] = []
    rows: list[str] = []
    with file.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("%"):
                header.append(stripped)
            elif stripped and (stripped[0].isdigit() or stripped[0] == "-"):
                rows.append(stripped)
    if not rows:
        return
    try:
        # Some files end rows with a stray ";": read the seven documented columns only.
        table = np.loadtxt(rows, delimiter=";", dtype=np.float64, ndmin=2, usecols=range(7))
    except ValueError as exc:
        raise ValueError(f"{file.name}: unreadable UMAFall rows: {exc}") from exc
    names = _positions(header)
    accel = table[table[:, 5] == ACCELEROMETER]
    for sensor_id in np.unique(accel[:, 6]).astype(int):
        position = names.get(int(sensor_id), f"sensor{sensor_id}")
        if positions is not None and position not in positions:
            continue
        rows_of = accel[accel[:, 6] == sensor_id]
        if rows_of.shape[0] < 2:
            continue
        yield Recording(
            dataset="umafall", subject=f"S{int(match['subject']):02d}",
            activity=match["activity"], trial=match["trial"], position=position,
            is_fall=match["kind"].lower() == "fall", rate_hz=rate_hz,
            samples=resample(rows_of[:, 0] / 1000.0, rows_of[:, 2:5], rate_hz),
        )


def _positions(header: list[str]) -> dict[int, str]:
    """Sensor id -> position from the `%` header where it says so, else the documented map."""
    found = dict(DEFAULT_POSITIONS)
    for line in header:
        m = _HEADER_POSITION.search(line)
        if m:
            found[int(m.group(1))] = _HEADER_NAMES[m.group(2).lower()]
    return found
