"""Derive the shipped default thresholds from the training subjects of one or more datasets.

    python -m detectors.falls.tune umafall=PATH [fallalld=PATH] [--rate-hz 20]

Each dataset is split by subject exactly as `detectors.falls.evaluate` splits it, and only the
training subjects are used; the thresholds for each device kind are tuned on the body position
that stands for it (watch: wrist; cane: waist), each dataset weighing the same. The printed
values are what `params.py` ships."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from detectors.falls.evaluate import DATASETS, Judged, held_out, judge, tune
from detectors.falls.params import FallParams

DEVICE_POSITION = {"smart_watch": "wrist", "smart_cane": "waist"}


def tune_defaults(sources: dict[str, Path], *, rate_hz: float = 20.0, test_fraction: float = 0.3,
                  seed: int = 6) -> dict[str, Any]:
    """Thresholds per device kind, tuned on the pooled training subjects of `sources`."""
    params = FallParams()
    train: dict[str, dict[str, list[Judged]]] = {kind: {} for kind in DEVICE_POSITION}
    for name, path in sources.items():
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
        recs = list(DATASETS[name](path, rate_hz=rate_hz, skipped=[]))
        test = set(held_out(sorted({r.subject for r in recs}), test_fraction, seed))
        for kind, pos in DEVICE_POSITION.items():
            train[kind][name] = [judge(r, params) for r in recs
                                 if r.position == pos and r.subject not in test]
    return {
        kind: {"position": DEVICE_POSITION[kind],
               "training_recordings": {n: len(g) for n, g in groups.items()},
               "thresholds": tune(list(groups.values())).model_dump()}
        for kind, groups in train.items()
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: print the tuned thresholds per device kind."""
    ap = argparse.ArgumentParser(prog="python -m detectors.falls.tune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", metavar="NAME=PATH")
    ap.add_argument("--rate-hz", type=float, default=20.0)
    args = ap.parse_args(argv)
    try:
        sources = {name: Path(path) for name, _, path in
                   (s.partition("=") for s in args.sources)}
        result = tune_defaults(sources, rate_hz=args.rate_hz)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind, r in result.items():
        print(f"{kind} ({r['position']}, training recordings {r['training_recordings']}): "
              f"{r['thresholds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
