"""The whole fall detector (model, cancel window, timers) replayed on subjects its model never
saw: the figures a family would live with, beside the classifier's own.

Cross-validation fits one model per fold of subjects; here each fold's model is written to a
model file and the streaming detector replays the fold's held-out recordings through it, as
`eldercare eval` replays the shipped model. A fall the subject gets up from within the cancel
window raises no alert by design, so sensitivity is given over all falls and over the falls
that end lying. False falls per elder-day come from each held-out subject's everyday
recordings strung together into one stream."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectors.falls.classifier import FORMAT
from detectors.falls.datasets import Recording
from detectors.falls.evaluate import POSITION_DEVICE_KIND, alerts_raised, false_falls_per_day
from detectors.falls.params import FallParams
from detectors.falls.stats import rates


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: its model (as the model file holds it) and held-out subjects
    (dataset-qualified, as `WindowTable.subjects` names them)."""

    model: dict[str, Any]
    held_out: frozenset[str]


def replay(position: str, recordings: Sequence[Recording], folds: Sequence[Fold]
           ) -> dict[str, Any]:
    """Verdicts of the detector on each fold's held-out recordings, through its fold's model."""
    kind = POSITION_DEVICE_KIND[position]
    pairs: list[tuple[Recording, bool]] = []
    false_falls, hours, subjects = 0, 0.0, 0
    with tempfile.TemporaryDirectory(prefix="eldercare-folds-") as tmp:
        for k, fold in enumerate(folds):
            path = Path(tmp) / f"fold{k}.json"
            path.write_text(json.dumps({"format": FORMAT, "positions": {position: fold.model}}),
                            encoding="utf-8")
            params = FallParams(model_file=str(path))
            held = [r for r in recordings if f"{r.dataset}/{r.subject}" in fold.held_out]
            pairs += [(r, alerts_raised(r, kind, params) > 0) for r in held]
            everyday = false_falls_per_day(held, kind, params)
            false_falls += everyday["false_falls"]
            hours += everyday["hours"]
            subjects += everyday["subjects"]
    out = rates(pairs)
    days = hours / 24.0
    out["everyday_life"] = {
        "subjects": subjects, "hours": round(hours, 2), "false_falls": false_falls,
        "false_falls_per_elder_day": round(false_falls / days, 2) if days else None}
    return out
