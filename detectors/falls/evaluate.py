"""Measure the shipped fall detector on a public dataset, per device position.

    eldercare eval --dataset NAME PATH [--json] [--rate-hz 50] [--tune]

By default every recording of the given files is scored with the SHIPPED detector (learned
model, cancel window and timers included): nothing is tuned on the data. Recordings are
resampled to a device rate; a simulated device cuts a window around every magnitude peak above
its trigger, as a real one does; each recording's windows are replayed through the real
`FallDetector`. Beside it, the classic rule (2.5 g impact, 45 degree turn, 50 Hz) on the same
recordings, the same figures for elders where the dataset gives ages, and false falls per
elder-day over each subject's everyday recordings strung together. `--tune` instead splits
subjects into training and held-out sets and tunes the threshold rule on the training ones."""

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
from detectors.falls.classic import RATE_HZ as CLASSIC_RATE_HZ
from detectors.falls.classic import classic_rule
from detectors.falls.datasets import (
    DEVICE_PROXY,
    Recording,
    fallalld,
    mobifall,
    sisfall,
    umafall,
)
from detectors.falls.detector import FallDetector
from detectors.falls.features import WindowFeatures, looks_like_fall, window_features
from detectors.falls.params import FallParams, FallThresholds
from detectors.falls.signal import impact_windows
from detectors.falls.stats import rates as _rates
from detectors.falls.training import AFTER_S, BEFORE_S, DEVICE_RATE_HZ, TRIGGER_G
from foundation.contracts.events import CanonicalEvent

DATASETS: dict[str, Callable[..., Iterator[Recording]]] = {
    "umafall": umafall.load, "fallalld": fallalld.load, "mobifall": mobifall.load,
    "sisfall": sisfall.load,  # evaluation only: never trained, tuned or selected on
}
GRID = {
    "impact_g": [1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.5, 4.0],
    "still_std_g": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0],
    "orientation_deg": [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
}
# Tuning weighs a missed fall twice as heavily as a false alarm: the worst failure is a fall
# nobody hears of, and a false alarm costs the elder one press of "I'm OK".
SENSITIVITY_WEIGHT = 2.0
POSITION_DEVICE_KIND = {"wrist": "smart_watch", "waist": "smart_cane", "thigh": "smart_cane",
                        "neck": "pendant"}


@dataclass(frozen=True)
class Judged:
    """A recording and the features of every window a device would have sent from it."""

    recording: Recording
    windows: list[WindowFeatures]


def evaluate_dataset(name: str, path: Path, *, rate_hz: float = DEVICE_RATE_HZ,
                     tune: bool = False, params: FallParams | None = None,
                     test_fraction: float = 0.3, seed: int = 6) -> dict[str, Any]:
    """Load `name` from `path` and score the shipped detector per position (or, with `tune`,
    split by subject and tune the threshold rule on the training subjects)."""
    recordings, skipped = _load(name, path, rate_hz)
    if tune:
        return _tuned(name, path, recordings, skipped, rate_hz, test_fraction, seed)
    params = params or FallParams()
    by_pos: dict[str, list[Recording]] = defaultdict(list)
    for r in recordings:
        by_pos[r.position].append(r)
    positions: dict[str, Any] = {}
    for pos in sorted(by_pos):
        recs = by_pos[pos]
        kind = POSITION_DEVICE_KIND.get(pos, "other")
        shipped = [(r, _alerts(r, kind, params) > 0) for r in recs]
        classic = [(r, classic_rule(_at_rate(r, CLASSIC_RATE_HZ), CLASSIC_RATE_HZ))
                   for r in recs]
        elders = [p for p in shipped if p[0].elder]
        positions[pos] = {
            "device_proxy": DEVICE_PROXY.get(pos, "none"), "device_kind": kind,
            **_rates(shipped),
            "elders": _rates(elders) if any(r.elder is not None for r in recs) else None,
            "classic_rule": _rates(classic),
            "everyday_life": false_falls_per_day(recs, kind, params),
        }
    return {
        "dataset": name, "path": str(path), "rate_hz": rate_hz, "tuned": False,
        "recordings": len(recordings), "skipped_files": skipped,
        "subjects": sorted({r.subject for r in recordings}),
        "device_windows": {"trigger_g": TRIGGER_G, "before_s": BEFORE_S, "after_s": AFTER_S},
        "positions": positions,
    }


def false_falls_per_day(recs: list[Recording], kind: str, params: FallParams
                        ) -> dict[str, Any]:
    """False alerts over each subject's everyday (non-fall) recordings strung together into
    one stream, per elder-day of recording."""
    by_subject: dict[str, list[Recording]] = defaultdict(list)
    for r in recs:
        if not r.is_fall:
            by_subject[r.subject].append(r)
    alerts, seconds = 0, 0.0
    for subject, mine in sorted(by_subject.items()):
        joined = np.vstack([r.samples for r in mine])
        rate = mine[0].rate_hz
        seconds += joined.shape[0] / rate
        alerts += _alerts(Recording(
            dataset=mine[0].dataset, subject=subject, activity="everyday", trial="all",
            position=mine[0].position, is_fall=False, rate_hz=rate, samples=joined), kind,
            params)
    days = seconds / 86400.0
    return {"subjects": len(by_subject), "hours": round(seconds / 3600.0, 2),
            "false_falls": alerts,
            "false_falls_per_elder_day": round(alerts / days, 2) if days else None}


def _load(name: str, path: Path, rate_hz: float) -> tuple[list[Recording], list[str]]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    skipped: list[str] = []
    recordings = list(DATASETS[name](path, rate_hz=rate_hz, skipped=skipped))
    if not recordings:
        raise ValueError(f"no {name} recordings found under {path}")
    return recordings, skipped


def _at_rate(rec: Recording, rate_hz: float) -> np.ndarray:
    """A recording's samples at another rate (the classic rule is defined at 50 Hz)."""
    if rec.rate_hz == rate_hz:
        return rec.samples
    from detectors.falls.signal import resample
    t = np.arange(rec.samples.shape[0], dtype=np.float64) / rec.rate_hz
    return resample(t, rec.samples, rate_hz)


def _tuned(name: str, path: Path, recordings: list[Recording], skipped: list[str],
           rate_hz: float, test_fraction: float, seed: int) -> dict[str, Any]:
    """The explicit tuning mode: the threshold rule tuned on training subjects."""
    params = FallParams(use_model=False)
    judged = [judge(r, params) for r in recordings]
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
            "test_shipped": _score_stream(test_set, kind, FallParams()),
        }
    return {
        "dataset": name, "path": str(path), "rate_hz": rate_hz, "tuned": True,
        "recordings": len(judged), "skipped_files": skipped,
        "subjects": {"train": [s for s in subjects if s not in test], "test": sorted(test)},
        "device_windows": {"trigger_g": TRIGGER_G, "before_s": BEFORE_S, "after_s": AFTER_S},
        "positions": positions,
    }


def format_report(result: dict[str, Any]) -> str:
    """The evaluation as a Markdown table: one row per position."""
    if result.get("tuned"):
        return _format_tuned(result)
    lines = [
        f"Dataset {result['dataset']} at {result['rate_hz']:g} Hz: {result['recordings']} "
        f"recordings of {len(result['subjects'])} subjects, shipped detector (nothing tuned "
        f"on these files), {len(result['skipped_files'])} unreadable files skipped.", "",
        "| position | stands for | recordings (falls) | sensitivity (95 % CI) | "
        "specificity (95 % CI) | false falls / elder-day | classic rule sens / spec |",
        "|---|---|---:|---|---|---:|---|",
    ]
    for pos, r in result["positions"].items():
        c, life = r["classic_rule"], r["everyday_life"]
        lines.append(
            f"| {pos} | {r['device_proxy']} | {r['recordings']} ({r['falls']}) | "
            f"{_ci(r, 'sensitivity')} | {_ci(r, 'specificity')} | "
            f"{life['false_falls_per_elder_day']} | {_pct(c['sensitivity'])} / "
            f"{_pct(c['specificity'])} |")
        if r["elders"] is not None and r["elders"]["recordings"]:
            e = r["elders"]
            lines.append(f"| {pos}, elders | | {e['recordings']} ({e['falls']})"
                         f" | {_ci(e, 'sensitivity')} | {_ci(e, 'specificity')} | | |")
    return "\n".join(lines)


def _ci(r: dict[str, Any], key: str) -> str:
    ci = r.get(f"{key}_ci95")
    return "n/a" if r[key] is None or ci is None else \
        f"{_pct(r[key])} ({_pct(ci[0])}-{_pct(ci[1])})"


def _format_tuned(result: dict[str, Any]) -> str:
    """The tuning mode's tables: one row per position and split."""
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
    return _rates([(j.recording, _alerts(j.recording, kind, params, detector) > 0)
                   for j in items])


def _alerts(rec: Recording, kind: str, params: FallParams,
            detector: FallDetector | None = None) -> int:
    """How many fall alerts the detector raises over one recording's device windows."""
    detector = detector or _detector(params)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    profile = ElderProfile(elder_id="eval", community_id="eval")
    state, alerts = detector.initial(), 0
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
    return alerts + len(detector.on_timer(state, end, profile).alerts)


_DETECTORS: dict[str, FallDetector] = {}


def _detector(params: FallParams) -> FallDetector:
    """One detector per parameter set (its model file is read once)."""
    key = params.model_dump_json()
    if key not in _DETECTORS:
        _DETECTORS[key] = FallDetector(params)
    return _DETECTORS[key]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def main(argv: list[str] | None = None) -> int:
    """Command line: evaluate one dataset and print the report (or JSON)."""
    ap = argparse.ArgumentParser(prog="python -m detectors.falls.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    ap.add_argument("path", type=Path, help="folder holding the dataset's files (any subset)")
    ap.add_argument("--rate-hz", type=float, default=DEVICE_RATE_HZ,
                    help="device rate to resample to (default 50)")
    ap.add_argument("--tune", action="store_true",
                    help="split subjects and tune the threshold rule on the training ones")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = ap.parse_args(argv)
    try:
        result = evaluate_dataset(args.dataset, args.path, rate_hz=args.rate_hz, tune=args.tune)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
