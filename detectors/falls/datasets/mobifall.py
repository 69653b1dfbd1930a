"""MobiFall v2.0 (Vavoulas et al., BMI lab, TEI of Crete, 2013): loader for its text files.

Files are named `<ACTIVITY>_<sensor>_<subject>_<trial>.txt` (e.g. `FOL_acc_3_2.txt`) inside
`sub<N>/FALLS/<ACTIVITY>/` or `sub<N>/ADL/<ACTIVITY>/`; only `acc` files are read. Each file has a
`#` header (with `#Age: NN`), an `@DATA` line, then `timestamp(ns), x, y, z` rows in m/s^2 from a
smartphone in the trouser pocket (a thigh position). The fall codes are FOL, FKL, BSC, SDL. Any
subset of the files loads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from detectors.falls.datasets import Recording, each_recording
from detectors.falls.signal import resample

NAME = re.compile(r"^(?P<activity>[A-Z]{3})_acc_(?P<subject>\d+)_(?P<trial>\d+)\.txt$")
FALLS = frozenset({"FOL", "FKL", "BSC", "SDL"})
STANDARD_GRAVITY = 9.80665
POSITION = "thigh"
ELDER_AGE = 65
_AGE = re.compile(r"^#\s*Age\s*:\s*(\d+)", re.IGNORECASE)


def find_files(path: Path) -> list[Path]:
    """MobiFall accelerometer files under `path` (a folder, searched recursively, or one file)."""
    if path.is_file():
        return [path] if NAME.match(path.name) else []
    return sorted(p for p in path.rglob("*_acc_*.txt") if NAME.match(p.name))


def load(path: Path, rate_hz: float = 50.0, positions: Iterable[str] | None = None,
         skipped: list[str] | None = None) -> Iterator[Recording]:
    """Every accelerometer recording under `path`, in g, resampled to `rate_hz`.

    An unreadable file raises ValueError, or, when `skipped` is given, is listed there with the
    reason and left out."""
    if positions is not None and POSITION not in set(positions):
        return
    yield from each_recording(find_files(path), lambda f: load_file(f, rate_hz), skipped)


def load_file(file: Path, rate_hz: float = 50.0) -> Recording | None:
    """One MobiFall accelerometer file as a recording (None when it holds fewer than 2 rows)."""
    match = NAME.match(file.name)
    if match is None:
        raise ValueError(f"{file.name}: not a MobiFall accelerometer file name")
    age: int | None = None
    rows: list[str] = []
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("#"):
            m = _AGE.match(line)
            age = int(m.group(1)) if m else age
        elif line and (line[0].isdigit() or line[0] == "-"):
            rows.append(line)
    if len(rows) < 2:
        return None
    try:
        table = np.loadtxt(rows, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{file.name}: unreadable MobiFall rows: {exc}") from exc
    if table.shape[1] != 4:
        raise ValueError(f"{file.name}: expected 4 columns (t,x,y,z), found {table.shape[1]}")
    activity = match["activity"]
    return Recording(
        dataset="mobifall", subject=f"M{int(match['subject']):02d}", activity=activity,
        trial=match["trial"], position=POSITION, is_fall=activity in FALLS, rate_hz=rate_hz,
        samples=resample(table[:, 0] / 1e9, table[:, 1:4] / STANDARD_GRAVITY, rate_hz),
        age=age, elder=None if age is None else age >= ELDER_AGE,
    )
