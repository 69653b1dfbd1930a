"""FallAllD (Saleh & Le Bouquin Jeannes, IEEE Dataport 2020, doi 10.21227/bnya-mn34): loader.

Files are named `S<subject>_D<device>_A<activity>_T<trial>_<sensor>.dat`: device 1 = neck,
2 = wrist, 3 = waist; sensor A = accelerometer (G gyroscope, M magnetometer, B barometer, which
we skip); activity ids 101-135 are falls, lower ids are activities of daily living. An
accelerometer file holds one `x,y,z` row of raw counts per sample at 238 Hz; one count is
0.244 mg (the LSM9DS1 at +-8 g). Any subset of the files loads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from detectors.falls.datasets import Recording, each_recording
from detectors.falls.signal import resample

NAME = re.compile(
    r"^S(?P<subject>\d+)_D(?P<device>\d)_A(?P<activity>\d+)_T(?P<trial>\d+)_A\.dat$",
    re.IGNORECASE,
)
DEVICE_POSITIONS = {1: "neck", 2: "wrist", 3: "waist"}
SOURCE_RATE_HZ = 238.0
G_PER_COUNT = 0.244e-3
FIRST_FALL_ACTIVITY = 101
# Falls the dataset's activity list marks "rec." (with recovery: the subject gets up again).
RECOVERY_FALLS = frozenset({102, 104, 106, 108, 110, 116, 118, 120, 122, 124, 126, 128})


def find_files(path: Path) -> list[Path]:
    """FallAllD accelerometer files under `path` (a folder, searched recursively, or one file)."""
    if path.is_file():
        return [path] if NAME.match(path.name) else []
    return sorted(p for p in path.rglob("*") if p.is_file() and NAME.match(p.name))


def load(path: Path, rate_hz: float = 20.0, positions: Iterable[str] | None = None,
         source_rate_hz: float = SOURCE_RATE_HZ, g_per_count: float = G_PER_COUNT,
         skipped: list[str] | None = None) -> Iterator[Recording]:
    """Every accelerometer recording under `path`, in g, resampled to `rate_hz`.

    An unreadable file raises ValueError, or, when `skipped` is given, is listed there with the
    reason and left out."""
    wanted = set(positions) if positions is not None else None
    for rec in each_recording(
            find_files(path), lambda f: load_file(f, rate_hz, source_rate_hz, g_per_count),
            skipped):
        if wanted is None or rec.position in wanted:
            yield rec


def load_file(file: Path, rate_hz: float = 20.0, source_rate_hz: float = SOURCE_RATE_HZ,
              g_per_count: float = G_PER_COUNT) -> Recording | None:
    """One FallAllD accelerometer file as a recording (None when it holds fewer than 2 rows)."""
    match = NAME.match(file.name)
    if match is None:
        raise ValueError(f"{file.name}: not a FallAllD accelerometer file name")
    lines = [ln.strip() for ln in file.read_text(encoding="utf-8", errors="replace").splitlines()]
    rows = [re.sub(r"[;\s]+", ",", ln).strip(",") for ln in lines if ln and ln[0] in "-0123456789"]
    if len(rows) < 2:
        return None
    try:
        counts = np.loadtxt(rows, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{file.name}: unreadable FallAllD rows: {exc}") from exc
    if counts.shape[1] != 3:
        raise ValueError(f"{file.name}: expected 3 columns (x,y,z), found {counts.shape[1]}")
    device = int(match["device"])
    activity = int(match["activity"])
    t = np.arange(counts.shape[0], dtype=np.float64) / source_rate_hz
    return Recording(
        dataset="fallalld", subject=f"S{int(match['subject']):02d}",
        activity=f"A{activity:03d}", trial=match["trial"],
        position=DEVICE_POSITIONS.get(device, f"device{device}"),
        is_fall=activity >= FIRST_FALL_ACTIVITY, rate_hz=rate_hz,
        samples=resample(t, counts * g_per_count, rate_hz),
        recovers=activity in RECOVERY_FALLS,
    )
