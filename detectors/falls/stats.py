"""Sensitivity and specificity of recording verdicts, with Wilson 95 % intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from detectors.falls.datasets import Recording

Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for k successes out of n (None when n is 0)."""
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def rates(pairs: Sequence[tuple[Recording, bool]]) -> dict[str, Any]:
    """Sensitivity over all falls and over falls that end lying (no recovery); specificity;
    each with its Wilson 95 % interval."""
    falls = sum(1 for rec, _ in pairs if rec.is_fall)
    lying = sum(1 for rec, _ in pairs if rec.is_fall and not rec.recovers)
    adls = len(pairs) - falls
    tp = sum(1 for rec, pred in pairs if rec.is_fall and pred)
    tp_lying = sum(1 for rec, pred in pairs if rec.is_fall and not rec.recovers and pred)
    tn = sum(1 for rec, pred in pairs if not rec.is_fall and not pred)
    return {
        "recordings": len(pairs), "falls": falls, "falls_ending_lying": lying,
        "true_positives": tp, "true_positives_lying": tp_lying, "true_negatives": tn,
        "sensitivity": round(tp / falls, 4) if falls else None,
        "sensitivity_ci95": wilson(tp, falls),
        "sensitivity_lying": round(tp_lying / lying, 4) if lying else None,
        "sensitivity_lying_ci95": wilson(tp_lying, lying),
        "specificity": round(tn / adls, 4) if adls else None,
        "specificity_ci95": wilson(tn, adls),
    }
