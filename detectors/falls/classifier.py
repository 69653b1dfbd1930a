"""The learned fall classifier: gradient-boosted trees per device position, evaluated in numpy.

The model file (`model/falls-model.json`, written by `eldercare train falls`) is plain JSON: for
each position (wrist, waist, neck) the feature names, the decision threshold and every tree as
flat node arrays. Nothing is unpickled, and running it needs numpy only: all trees are walked
at once, one level per step."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.falls.impact_features import FEATURE_NAMES, MODEL_RATE_HZ, impact_vector

FORMAT = "eldercare-falls-gbdt/1"
SHIPPED_MODEL = Path(__file__).parent / "model" / "falls-model.json"
# Which model judges a device kind's windows (a cane is held at hip height: the waist model).
DEVICE_POSITION = {"smart_watch": "wrist", "smart_cane": "waist", "pendant": "neck"}


@dataclass(frozen=True)
class FallClassifier:
    """One position's boosted trees, flattened: node arrays indexed from each tree's root."""

    position: str
    threshold: float
    baseline: float
    roots: npt.NDArray[np.int64]
    feature: npt.NDArray[np.int64]
    split: npt.NDArray[np.float64]
    missing_left: npt.NDArray[np.bool_]
    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    depth: int

    def probability(self, x: npt.NDArray[np.float64]) -> float:
        """P(fall) for one feature vector (NaN = not measured)."""
        node = self.roots
        for _ in range(self.depth):
            v = x[self.feature[node]]
            go_left = np.where(np.isnan(v), self.missing_left[node], v <= self.split[node])
            node = np.where(go_left, self.left[node], self.right[node])
        raw = self.baseline + float(self.value[node].sum())
        return float(1.0 / (1.0 + np.exp(-raw)))

    def judge(self, samples: object, rate_hz: float) -> tuple[float, float]:
        """P(fall) of one window at the device's own rate, and the impact's offset (s)."""
        x, offset = impact_vector(samples, rate_hz)
        return self.probability(x), offset

    @classmethod
    def from_dict(cls, position: str, d: dict[str, Any]) -> FallClassifier:
        """Build from one position's entry of the model file (validated, flattened)."""
        if list(d.get("features", [])) != list(FEATURE_NAMES):
            raise ValueError(f"{position}: the model's features differ from this code's")
        if float(d.get("model_rate_hz", 0)) != MODEL_RATE_HZ:
            raise ValueError(f"{position}: the model was trained at another rate")
        parts: dict[str, list[Any]] = {k: [] for k in
                                       ("feature", "split", "missing_left", "left", "right",
                                        "value")}
        roots: list[int] = []
        depth = 1
        for tree in d["trees"]:
            base = len(parts["feature"])
            size = len(tree["feature"])
            roots.append(base)
            leaf = np.asarray(tree["leaf"], dtype=bool)
            idx = np.arange(size)
            # A leaf points at itself, so walking past it is harmless.
            left = np.where(leaf, idx, np.asarray(tree["left"], dtype=np.int64)) + base
            right = np.where(leaf, idx, np.asarray(tree["right"], dtype=np.int64)) + base
            if ((left < base) | (left >= base + size) | (right < base)
                    | (right >= base + size)).any():
                raise ValueError(f"{position}: a tree points outside itself")
            parts["left"] += left.tolist()
            parts["right"] += right.tolist()
            parts["feature"] += [0 if lf else f
                                 for f, lf in zip(tree["feature"], leaf, strict=True)]
            parts["split"] += tree["threshold"]
            parts["missing_left"] += tree["missing_left"]
            parts["value"] += [v if lf else 0.0 for v, lf in zip(tree["value"], leaf, strict=True)]
            depth = max(depth, int(tree["depth"]))
        feature = np.asarray(parts["feature"], dtype=np.int64)
        if feature.size and (feature.min() < 0 or feature.max() >= len(FEATURE_NAMES)):
            raise ValueError(f"{position}: a tree splits on an unknown feature")
        return cls(
            position=position, threshold=float(d["threshold"]), baseline=float(d["baseline"]),
            roots=np.asarray(roots, dtype=np.int64), feature=feature,
            split=np.asarray(parts["split"], dtype=np.float64),
            missing_left=np.asarray(parts["missing_left"], dtype=bool),
            left=np.asarray(parts["left"], dtype=np.int64),
            right=np.asarray(parts["right"], dtype=np.int64),
            value=np.asarray(parts["value"], dtype=np.float64), depth=depth,
        )


def load_models(path: Path) -> dict[str, FallClassifier]:
    """Every position's classifier from a model file; a clear ValueError when it is not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read fall model {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} model file")
    try:
        return {pos: FallClassifier.from_dict(pos, d) for pos, d in doc["positions"].items()}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed model file ({exc!r})") from exc


@lru_cache(maxsize=4)
def shipped_models(path: Path = SHIPPED_MODEL) -> dict[str, FallClassifier]:
    """The model file shipped with the code (read once per process); empty when absent."""
    return load_models(path) if path.exists() else {}


def position_of(device_kind: str) -> str:
    """The body position whose model judges this device kind's windows."""
    return DEVICE_POSITION.get(device_kind, "waist")
