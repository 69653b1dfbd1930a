"""Loaders for public accelerometer fall datasets. The project ships loaders, never the data."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from detectors.falls.signal import Array

# Which of our devices a dataset's sensor position stands for.
DEVICE_PROXY = {
    "wrist": "smart_watch",
    "waist": "smart_cane (proxy)",
    "thigh": "smart_cane (proxy)",
    "chest": "none (pendant-like)",
    "neck": "none (pendant)",
    "ankle": "none",
}


@dataclass(frozen=True)
class Recording:
    """One labelled recording from one sensor position, resampled to a device's rate."""

    dataset: str
    subject: str
    activity: str
    trial: str
    position: str
    is_fall: bool
    rate_hz: float
    samples: Array  # (n, 3) in g
    # A fall after which the subject gets up again: by design no alert when the elder gets up
    # within the cancel window, so these are reported apart from falls that end lying.
    recovers: bool = False
    # The subject's age in years where the dataset records it (elders are reported apart).
    age: int | None = None
    # Whether the subject is an elder, where the dataset says (its own age group, or age 65+).
    elder: bool | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.activity}/{self.trial}/{self.position}"


def each_recording(files: Iterable[Path], read: Callable[[Path], Recording | None],
                   skipped: list[str] | None = None) -> Iterator[Recording]:
    """`read` every file, in order; a file too short to be a recording (None) is left out. An
    unreadable one raises ValueError, or, when `skipped` is given, is listed there with the
    reason and left out (any subset of a dataset's files loads)."""
    for file in files:
        try:
            rec = read(file)
        except ValueError as exc:
            if skipped is None:
                raise
            skipped.append(str(exc))
            continue
        if rec is not None:
            yield rec
