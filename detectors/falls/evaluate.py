"""Measure fall detection on a public dataset: subject-wise split, tuning, per-position figures.

    python -m detectors.falls.evaluate --dataset umafall PATH [--rate-hz 20] [--json]

Recordings are resampled to the rate a cane or watch sends; a simulated device cuts a window
around every magnitude peak above its trigger, as a real one does. Subjects (never single
recordings) are split into training and held-out sets; thresholds are tuned per body position
on the training subjects only, and reported on both; the shipped defaults (`FallParams()`) are
reported on the held-out subjects. Every figure replays the windows through the real
`FallDetector`, cancel window and timers included."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import ElderProfile
from detectors.falls.datasets import DEVICE_PROXY, Recording, fallalld, umafall
from detectors.falls.detector import FallDetector
from detectors.falls.features import WindowFeatures, looks_like_fall, window_features
from detectors.falls.params import FallParams, FallThresholds
from detectors.falls.signal import impact_windows
from devices.events import CanonicalEvent

DATASETS: dict[str, Callable[..., Iterator[Recording]]] = {
    "umafall": umafall.load, "fallalld": fallalld.load,
}
# What a device does before the server sees anything: it sends a window when the magnitude
# crosses a low trigger, from BEFORE_S before the peak to AFTER_S after it.
TRIGGER_G = 1.5
BEFORE_S = 4.0
AFTER_S = 5.0
GRID = {
    "impact_g": [1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.5, 4.0],
    "still_std_g": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0],
    "orientation_deg": [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
}
# Tuning weighs a missed fall twice as heavily as a false alarm: the worst failure is a fall
# nobody hears of, and a false alarm costs the elder one press of "I'm OK".
SENSITIVITY_WEIGHT = 2.0
POSITION_DEVICE_KIND = {"wrist": "smart_watch", "waist": "smart_cane", "thigh": "smart_cane"}


@dataclass(frozen=True)
class Judged:
    """A recording and the features of every window a device would have sent from it."""

    recording: Recording
    windows: list[WindowFeatures]


def evaluate_dataset(name: str, path: Path, *, rate_hz: float = 20.0,
                     test_fraction: float = 0.3, seed: int = 6) -> dict[str, Any]:
    """Load `name` from `path`, split by subject, tune per position, report per position."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    skipped: list[str] = []
    params = FallParams()
    judged = [judge(r, params) for r in DATASETS[name](path, rate_hz=rate_hz, skipped=skipped)]
    if not judged:
        raise ValueError(f"no {name} recordings found under {path}")
    subjects = sorted({j.recording.subject for j in judged})
    test = set(held_out(subjects, test_fraction, seed))
    by_pos: dict[str, list[Judged]] = defaultdict(list)
    for j in judged:
        by_pos[j.recording.position].append(j)

    positions: dict[str, Any] = {}
    for pos in sorted(by_pos):
        train_set = [j for j in by_pos[pos] if j.recording.subject not in test]
        test_set = [j for j in by_pos[pos] if j.recording.subject in test]
        kind = POSITION_DEVICE_KIND.get(pos, "other")
        tuned = tune([train_set])
        tuned_params = params.model_copy(update={
            "by_device_kind": {**params.by_device_kind, kind: tuned}, "default": tuned})
        positions[pos] = {
            "device_proxy": DEVICE_PROXY.get(pos, "none"),
            "tuned_thresholds": tuned.model_dump(),
            "shipped_thresholds": params.thresholds_for(kind).model_dump(),
            "train": _score_stream(train_set, kind, tuned_params),
            "test": _score_stream(test_set, kind, tuned_params),
            "test_shipped": _score_stream(test_set, kind, params),
        }
    return {
        "dataset": name, "path": str(path), "rate_hz": rate_hz,
        "recordings": len(judged), "skipped_files": skipped,
        "subjects": {"train": [s for s in subjects if s not in test], "test": sorted(test)},
        "device_windows": {"trigger_g": TRIGGER_G, "before_s": BEFORE_S, "after_s": AFTER_S},
        "positions": positions,
    }


def format_report(result: dict[str, Any]) -> str:
    """The evaluation as Markdown tables: one row per position and split."""
    lines = [
        f"Dataset {result['dataset']} at {result['rate_hz']:g} Hz: {result['recordings']} "
        f"recordings, {len(result['skipped_files'])} unreadable files skipped.",
        f"Training subjects: {', '.join(result['subjects']['train'])}",
        f"Held-out subjects: {', '.join(result['subjects']['test'])}",
        "",
        "Falls that end lying (the subject does not get up) in brackets.",
        "",
        "| position | stands for | split | recordings | falls | sensitivity | specificity |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for pos, r in result["positions"].items():
        for split, label in (("train", "train (tuned)"), ("test", "held-out (tuned on train)"),
                             ("test_shipped", "held-out, shipped defaults")):
            s = r[split]
            lines.append(
                f"| {pos} | {r['device_proxy']} | {label} | {s['recordings']} | {s['falls']} "
                f"({s['falls_ending_lying']}) | {_pct(s['sensitivity'])} "
                f"({_pct(s['sensitivity_lying'])}) | {_pct(s['specificity'])} |")
    lines += ["", "| position | tuned impact_g | still_std_g | orientation_deg |",
              "|---|---:|---:|---:|"]
    for pos, r in result["positions"].items():
        t = r["tuned_thresholds"]
        lines.append(f"| {pos} | {t['impact_g']:g} | {t['still_std_g']:g} | "
                     f"{t['orientation_deg']:g} |")
    return "\n".join(lines)


def judge(rec: Recording, params: FallParams) -> Judged:
    """Cut the windows a device would send from a recording and measure each."""
    windows = impact_windows(rec.samples, rec.rate_hz, TRIGGER_G, BEFORE_S, AFTER_S)
    return Judged(rec, [window_features(w, rec.rate_hz, params) for _, w in windows])


def held_out(subjects: list[str], fraction: float, seed: int) -> list[str]:
    """A fixed, seeded choice of held-out subjects (at least one, never all when >1)."""
    rng = np.random.default_rng(seed)
    n = min(len(subjects) - 1, max(1, round(len(subjects) * fraction))) if len(subjects) > 1 else 0
    return sorted(str(s) for s in rng.permutation(subjects)[:n])


def _score(items: list[Judged], t: FallThresholds) -> dict[str, Any]:
    """Window verdicts alone (no cancel window): fast enough for the tuning grid."""
    return _rates([(j.recording, any(looks_like_fall(w, t) for w in j.windows)) for j in items])


def _rates(pairs: list[tuple[Recording, bool]]) -> dict[str, Any]:
    """Sensitivity over all falls and over falls that end lying (no recovery); specificity."""
    falls = sum(1 for rec, _ in pairs if rec.is_fall)
    lying = sum(1 for rec, _ in pairs if rec.is_fall and not rec.recovers)
    adls = len(pairs) - falls
    tp = sum(1 for rec, pred in pairs if rec.is_fall and pred)
    tp_lying = sum(1 for rec, pred in pairs if rec.is_fall and not rec.recovers and pred)
    tn = sum(1 for rec, pred in pairs if not rec.is_fall and not pred)
    return {
        "recordings": len(pairs), "falls": falls, "falls_ending_lying": lying,
        "true_positives": tp, "true_positives_lying": tp_lying, "true_negatives": tn,
        "sensitivity": tp / falls if falls else None,
        "sensitivity_lying": tp_lying / lying if lying else None,
        "specificity": tn / adls if adls else None,
    }


def tune(groups: list[list[Judged]]) -> FallThresholds:
    """The grid point with the best SENSITIVITY_WEIGHT * sensitivity + specificity, averaged
    over `groups` (one per dataset, so a large dataset does not drown a small one); ties go to
    higher sensitivity, then to the first point in grid order."""
    groups = [g for g in groups if g]
    best: tuple[float, float] | None = None
    choice = FallThresholds()
    for impact, still, turn in itertools.product(*GRID.values()):
        t = FallThresholds(impact_g=impact, still_std_g=still, orientation_deg=turn)
        scores = [_score(g, t) for g in groups]
        sens = sum(r["sensitivity"] or 0.0 for r in scores) / max(1, len(groups))
        spec = sum(r["specificity"] or 0.0 for r in scores) / max(1, len(groups))
        key = (SENSITIVITY_WEIGHT * sens + spec, sens)
        if best is None or key > best:
            best, choice = key, t
    return choice


def _score_stream(items: list[Judged], kind: str, params: FallParams) -> dict[str, Any]:
    """Replay each recording's windows through the real detector, timers included."""
    detector = FallDetector(params)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    profile = ElderProfile(elder_id="eval", community_id="eval")
    pairs: list[tuple[Recording, bool]] = []
    for j in items:
        rec, state, alerts = j.recording, detector.initial(), 0
        windows = impact_windows(rec.samples, rec.rate_hz, TRIGGER_G, BEFORE_S, AFTER_S)
        for i, (first, w) in enumerate(windows):
            at = t0 + timedelta(seconds=first / rec.rate_hz)
            event = CanonicalEvent(
                event_id=f"{rec.key}/{i}", elder_id="eval", community_id="eval",
                device_id=rec.key, device_kind=kind, type="accel", event_time=at,
                received_at=at, data={"rate_hz": rec.rate_hz, "samples": w.tolist()},
            )
            state = detector.on_event(state, event, profile).state
            verdict = detector.on_timer(state, at, profile)
            state, alerts = verdict.state, alerts + len(verdict.alerts)
        end = t0 + timedelta(seconds=len(rec.samples) / rec.rate_hz + params.cancel_window_s + 1)
        alerts += len(detector.on_timer(state, end, profile).alerts)
        pairs.append((rec, alerts > 0))
    return _rates(pairs)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def main(argv: list[str] | None = None) -> int:
    """Command line: evaluate one dataset and print the report (or JSON)."""
    ap = argparse.ArgumentParser(prog="python -m detectors.falls.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    ap.add_argument("path", type=Path, help="folder holding the dataset's files (any subset)")
    ap.add_argument("--rate-hz", type=float, default=20.0, help="device rate to resample to")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = ap.parse_args(argv)
    try:
        result = evaluate_dataset(args.dataset, args.path, rate_hz=args.rate_hz)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
