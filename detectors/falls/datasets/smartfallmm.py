"""SmartFallMM (Texas State University SmartFall group): loader, for evaluation only.

Reserved for independent evaluation: nothing in eldercare is trained, tuned or selected on it.
Files are named `S<subject>A<activity>T<trial>.csv` (e.g. `S01A10T05.csv`) under
`<Young|Old>.../Accelerometer/<Phone|Watch|Meta_wrist|Meta_hip>/`; gyroscope and skeleton
folders are not read. Rows have no header: a watch or phone row is `time, x, y, z` (about
32 Hz), a Meta sensor row is `epoch (ms), time, elapsed (s), x, y, z` (50 Hz). Activities 10-14
are falls (young participants only); 1-9 are everyday activities. The Old group is reported as
elders. Units are not stated: magnitudes around 9.8 are read as m/s^2. Any subset of the files
(subjects, activities, devices) loads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from detectors.falls.datasets import Recording, each_recording
from detectors.falls.datasets.units import in_g, parse_time, seconds
from detectors.falls.signal import resample

NAME = re.compile(r"^S(?P<subject>\d+)A(?P<activity>\d+)T(?P<trial>\d+)\.csv$", re.IGNORECASE)
FALLS = frozenset(range(10, 15))
# Device folder -> the body position it stands for. The phone is carried at the hip, in a
# trouser pocket, like MobiFall's: a thigh position.
DEVICES = {"watch": "wrist", "meta_wrist": "wrist", "meta_hip": "waist", "phone": "thigh"}
NOMINAL_RATE_HZ = {"watch": 32.0, "phone": 32.0, "meta_wrist": 50.0, "meta_hip": 50.0}


def find_files(path: Path) -> list[Path]:
    """SmartFallMM accelerometer files under `path` (a folder, searched recursively, or one
    file); a file must sit in a device folder inside an accelerometer folder."""
    if path.is_file():
        return [path] if _device(path) else []
    return sorted(p for p in path.rglob("*.csv") if _device(p))


def load(path: Path, rate_hz: float = 50.0, positions: Iterable[str] | None = None,
         skipped: list[str] | None = None) -> Iterator[Recording]:
    """Every accelerometer recording under `path`, in g, resampled to `rate_hz`. An unreadable
    file raises ValueError, or, when `skipped` is given, is listed there with the reason and
    left out."""
    wanted = set(positions) if positions is not None else None
    files = [f for f in find_files(path) if wanted is None or DEVICES[_device(f)] in wanted]
    yield from each_recording(files, lambda f: load_file(f, rate_hz), skipped)


def load_file(file: Path, rate_hz: float = 50.0) -> Recording | None:
    """One SmartFallMM accelerometer file as a recording (None when it holds fewer than 2
    rows)."""
    match, device = NAME.match(file.name), _device(file)
    if match is None or not device:
        raise ValueError(f"{file}: not a SmartFallMM Accelerometer/<device>/SnnAnnTnn.csv file")
    cells = [[c.strip() for c in ln.split(",")] for ln in
             file.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if len(cells) < 2:
        return None
    width = len(cells[0])
    if width not in (4, 6) or any(len(c) != width for c in cells):
        raise ValueError(f"{file.name}: expected 4 (watch, phone) or 6 (Meta) columns per row")
    try:
        t = np.array([parse_time(c[0] if width == 4 else c[2]) for c in cells])
        xyz = np.array([[float(v) for v in c[-3:]] for c in cells], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{file.name}: unreadable SmartFallMM rows: {exc}") from exc
    t = seconds(t) if width == 4 else t - t[0]  # Meta's third column is already seconds
    if not np.all(np.isfinite(t)) or float(t[-1] - t[0]) <= 0:
        # No usable clock: the device's documented rate.
        t = np.arange(len(cells), dtype=np.float64) / NOMINAL_RATE_HZ[device]
    group = _group(file)
    activity = int(match["activity"])
    return Recording(
        dataset="smartfallmm",
        subject=f"{group or ''}S{int(match['subject']):02d}".lstrip("/"),
        activity=f"A{activity:02d}", trial=f"T{int(match['trial']):02d}-{device}",
        position=DEVICES[device], is_fall=activity in FALLS, rate_hz=rate_hz,
        samples=resample(t, in_g(xyz, file.name), rate_hz),
        elder=None if group is None else group == "old/",
    )


def _device(file: Path) -> str:
    """The device folder ('watch', 'phone', 'meta_wrist', 'meta_hip') of an accelerometer file,
    or '' when the file is not one."""
    if not NAME.match(file.name) or len(file.parts) < 3:
        return ""
    device = file.parent.name.lower().replace(" ", "_").replace("-", "_")
    in_accel = "accelerometer" in file.parent.parent.name.lower()
    return device if in_accel and device in DEVICES else ""


def _group(file: Path) -> str | None:
    """'young/' or 'old/' from the folders above the file, if named so."""
    for part in reversed(file.parts[:-3]):
        low = part.lower()
        if low.startswith("young"):
            return "young/"
        if low.startswith("old"):
            return "old/"
    return None
