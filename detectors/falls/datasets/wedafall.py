"""WEDA-FALL (Marques & Moreno, Wrist Elderly Daily Activity and Fall, 2023): loader, for
evaluation only.

Reserved for independent evaluation: nothing in eldercare is trained, tuned or selected on it.
A Fitbit Sense worn on the wrist, recorded at 50 Hz; the dataset also ships copies resampled to
40, 25, 10 and 5 Hz. Files are `dataset/<N>Hz/<CODE>/U<id>_R<trial>_accel.csv` with CODE F01-F08
(falls) or D01-D11 (everyday activities), and a header row naming the columns
(`accel_time_list, accel_x_list, accel_y_list, accel_z_list`). Gyroscope, orientation and
`vertical_accel` files are not read. Users 1-14 are young adults; users 21-31 are elders (77-95
years, everyday activities only). When several rate folders are under the path, only the
fastest is read, so no trial counts twice. Any subset of the files loads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from detectors.falls.datasets import Recording, each_recording
from detectors.falls.datasets.units import in_g, seconds
from detectors.falls.signal import resample

NAME = re.compile(r"^U(?P<user>\d+)_R(?P<trial>\d+)_accel\.csv$", re.IGNORECASE)
ACTIVITY = re.compile(r"^(?P<kind>[FD])(?P<code>\d{2})$", re.IGNORECASE)
RATE_FOLDER = re.compile(r"^(\d+(?:\.\d+)?)\s*hz$", re.IGNORECASE)
POSITION = "wrist"
# The ages the dataset's README gives per user id (users 21-31 are its elder group).
AGES = {1: 22, 2: 22, 3: 20, 4: 21, 5: 23, 6: 22, 7: 21, 8: 23, 9: 22, 10: 23, 11: 23, 12: 23,
        13: 22, 14: 46, 21: 95, 22: 85, 23: 82, 24: 81, 25: 81, 26: 83, 27: 89, 28: 88,
        29: 77, 30: 80, 31: 88}
FIRST_ELDER_ID = 21


def find_files(path: Path) -> list[Path]:
    """WEDA-FALL accelerometer files under `path` (a folder, searched recursively, or one
    file), from the fastest rate folder only when several are present."""
    if path.is_file():
        return [path] if _is_weda(path) else []
    files = [p for p in path.rglob("*_accel.csv") if _is_weda(p)]
    rates = {f: _folder_rate(f) for f in files}
    known = [r for r in rates.values() if r is not None]
    if known:
        fastest = max(known)
        files = [f for f in files if rates[f] in (None, fastest)]
    return sorted(files)


def load(path: Path, rate_hz: float = 50.0, positions: Iterable[str] | None = None,
         skipped: list[str] | None = None) -> Iterator[Recording]:
    """Every accelerometer recording under `path`, in g, resampled to `rate_hz`. An unreadable
    file raises ValueError, or, when `skipped` is given, is listed there with the reason and
    left out."""
    if positions is not None and POSITION not in set(positions):
        return
    yield from each_recording(find_files(path), lambda f: load_file(f, rate_hz), skipped)


def load_file(file: Path, rate_hz: float = 50.0) -> Recording | None:
    """One WEDA-FALL accelerometer file as a recording (None when it holds fewer than 2 rows)."""
    name, activity = NAME.match(file.name), ACTIVITY.match(file.parent.name)
    if name is None or activity is None:
        raise ValueError(f"{file}: not a WEDA-FALL <F|D>NN/U<id>_R<trial>_accel.csv file")
    lines = [ln.strip() for ln in file.read_text(encoding="utf-8", errors="replace")
             .splitlines() if ln.strip()]
    if not lines:
        return None
    header = [h.strip().lower() for h in lines[0].split(",")]
    columns = _columns(header, file.name)
    rows = lines[1:]
    if len(rows) < 2:
        return None
    try:
        table = np.loadtxt(rows, delimiter=",", dtype=np.float64, ndmin=2, usecols=columns)
    except ValueError as exc:
        raise ValueError(f"{file.name}: unreadable WEDA-FALL rows: {exc}") from exc
    user = int(name["user"])
    age = AGES.get(user)
    code = activity.group(0).upper()
    return Recording(
        dataset="wedafall", subject=f"U{user:02d}", activity=code, trial=name["trial"],
        position=POSITION, is_fall=code.startswith("F"), rate_hz=rate_hz,
        samples=resample(seconds(table[:, 0]), in_g(table[:, 1:4], file.name), rate_hz),
        age=age, elder=user >= FIRST_ELDER_ID,
    )


def _columns(header: list[str], name: str) -> tuple[int, int, int, int]:
    """Indexes of the time, x, y and z columns, found by name (the dataset's header row)."""
    def find(*needles: str) -> int:
        for i, h in enumerate(header):
            if all(n in h for n in needles):
                return i
        raise ValueError(f"{name}: no {' '.join(needles)} column in header {header}")
    return find("time"), find("x"), find("y"), find("z")


def _is_weda(file: Path) -> bool:
    return bool(NAME.match(file.name)) and bool(ACTIVITY.match(file.parent.name))


def _folder_rate(file: Path) -> float | None:
    """The rate of the `<N>Hz` folder the file sits in, if any."""
    for part in reversed(file.parts[:-2]):
        m = RATE_FOLDER.match(part)
        if m:
            return float(m.group(1))
    return None
