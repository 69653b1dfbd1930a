"""SisFall (Sucerquia, Lopez & Vargas-Bonilla, Sensors 2017): loader, for evaluation only.

Reserved for independent evaluation: nothing in eldercare is trained, tuned or selected on it.
Files are named `<D|F><NN>_<SA|SE><NN>_R<NN>.txt` (D = activity of daily living, F = fall; SA =
young adult, SE = elderly, 60-75 years), usually in one folder per subject. Each line holds
`ax1, ay1, az1, gx, gy, gz, ax2, ay2, az2;` at 200 Hz from a device worn at the waist: an
ADXL345 (+-16 g, 13 bits: the first three columns) and an MMA8451Q (+-8 g, 14 bits). We read
the ADXL345. Any subset of the files loads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from detectors.falls.datasets import Recording, each_recording
from detectors.falls.signal import resample

NAME = re.compile(r"^(?P<kind>[DF])(?P<activity>\d{2})_(?P<group>S[AE])(?P<subject>\d{2})"
                  r"_R(?P<trial>\d{2})\.txt$", re.IGNORECASE)
SOURCE_RATE_HZ = 200.0
G_PER_COUNT = 2 * 16 / 2**13  # ADXL345 at +-16 g, 13 bits
POSITION = "waist"


def find_files(path: Path) -> list[Path]:
    """SisFall recording files under `path` (a folder, searched recursively, or one file)."""
    if path.is_file():
        return [path] if NAME.match(path.name) else []
    return sorted(p for p in path.rglob("*.txt") if NAME.match(p.name))


def load(path: Path, rate_hz: float = 50.0, positions: Iterable[str] | None = None,
         skipped: list[str] | None = None) -> Iterator[Recording]:
    """Every recording under `path`, in g, resampled to `rate_hz`. An unreadable file raises
    ValueError, or, when `skipped` is given, is listed there with the reason and left out."""
    if positions is not None and POSITION not in set(positions):
        return
    yield from each_recording(find_files(path), lambda f: load_file(f, rate_hz), skipped)


def load_file(file: Path, rate_hz: float = 50.0) -> Recording | None:
    """One SisFall file as a recording (None when it holds fewer than 2 rows)."""
    match = NAME.match(file.name)
    if match is None:
        raise ValueError(f"{file.name}: not a SisFall file name")
    rows = [ln.strip().rstrip(";").strip() for ln in
            file.read_text(encoding="utf-8", errors="replace").splitlines()]
    rows = [r for r in rows if r and (r[0].isdigit() or r[0] == "-")]
    if len(rows) < 2:
        return None
    try:
        table = np.loadtxt(rows, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{file.name}: unreadable SisFall rows: {exc}") from exc
    if table.shape[1] != 9:
        raise ValueError(f"{file.name}: expected 9 columns, found {table.shape[1]}")
    t = np.arange(table.shape[0], dtype=np.float64) / SOURCE_RATE_HZ
    group = match["group"].upper()
    return Recording(
        dataset="sisfall", subject=f"{group}{match['subject']}",
        activity=f"{match['kind'].upper()}{match['activity']}", trial=match["trial"],
        position=POSITION, is_fall=match["kind"].upper() == "F", rate_hz=rate_hz,
        samples=resample(t, table[:, 0:3] * G_PER_COUNT, rate_hz), elder=group == "SE",
    )
