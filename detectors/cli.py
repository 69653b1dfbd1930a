"""`eldercare` subcommands of the detectors package: `eldercare train falls` (`eldercare eval`
lives in `simulators/cli.py`: it builds its streams and homes with the simulators)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _train_falls(args: argparse.Namespace, settings: object) -> int:
    try:
        from detectors.falls import training
    except ImportError as exc:
        print(f"training needs scikit-learn (pip install 'eldercare[train]'): {exc}",
              file=sys.stderr)
        return 2
    sources = {name: path for name, path in
               (("fallalld", args.fallalld), ("mobifall", args.mobifall),
                ("umafall", args.umafall)) if path is not None}
    if not sources:
        print("give at least one dataset: --fallalld PATH, --mobifall PATH, --umafall PATH",
              file=sys.stderr)
        return 2
    try:
        result = training.train(
            sources, args.out or training.SHIPPED_MODEL,
            seed=training.SEED if args.seed is None else args.seed,
            folds=training.FOLDS if args.folds is None else args.folds,
            replay=not args.no_replay)
    except ImportError as exc:
        print(f"training needs scikit-learn (pip install 'eldercare[train]'): {exc}",
              file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"cannot train the fall model: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else training.format_report(result))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands to the `eldercare` parser."""
    tr = sub.add_parser("train", help="train a learned detector from public datasets")
    trsub = tr.add_subparsers(dest="model", required=True)
    falls = trsub.add_parser(
        "falls", help="the fall classifier per device position (wrist, waist, neck), "
        "cross-validated by subject; writes the model file the fall detector loads")
    falls.add_argument("--fallalld", type=Path, metavar="PATH", help="FallAllD files")
    falls.add_argument("--mobifall", type=Path, metavar="PATH", help="MobiFall v2.0 files")
    falls.add_argument("--umafall", type=Path, metavar="PATH", help="UMAFall CSV files")
    falls.add_argument("--out", type=Path, default=None,
                       help="model file to write (default: the shipped one)")
    falls.add_argument("--seed", type=int, default=None, help="random seed (default 18)")
    falls.add_argument("--folds", type=int, default=None,
                       help="cross-validation folds of subjects (default 5)")
    falls.add_argument("--no-replay", action="store_true",
                       help="skip replaying each fold's model through the streaming detector "
                       "on its held-out subjects (faster; the model file is the same)")
    falls.add_argument("--json", action="store_true", help="JSON report instead of a table")
    falls.set_defaults(func=_train_falls)
