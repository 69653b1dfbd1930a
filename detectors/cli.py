"""`eldercare` subcommands of the detectors package: `eldercare eval`, `eldercare train falls`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _eval_homes(args: argparse.Namespace, path: Path) -> int:
    from detectors.config import DetectorConfig
    from detectors.evaluation.homes import load_homes
    from detectors.evaluation.silent_days import evaluate_homes, format_report

    names = [n for n in (args.homes or "").split(",") if n] or None
    try:
        if str(path).startswith("sim:"):
            from detectors.evaluation.sim_homes import simulated_homes

            homes = simulated_homes(str(path), args.seed)
        else:
            homes = load_homes(path, names, args.max_days, args.format)
        config = DetectorConfig(timezone=args.tz) if args.tz else DetectorConfig()
        result = evaluate_homes(homes, config, args.learn, args.every, args.seed,
                                args.noisy_night)
    except (ValueError, OSError) as exc:
        print(f"cannot evaluate homes at {path}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str) if args.json else format_report(result))
    return 0


def _eval(args: argparse.Namespace, settings: object) -> int:
    if args.dataset and args.dataset[0] == "homes":
        return _eval_homes(args, Path(args.dataset[1]))
    if args.dataset:
        try:
            from detectors.falls.evaluate import evaluate_dataset, format_report
        except ImportError as exc:
            print(f"fall dataset evaluation is not available: {exc}", file=sys.stderr)
            return 2
        name, path = args.dataset
        try:
            result = evaluate_dataset(name, Path(path), rate_hz=args.rate_hz, tune=args.tune)
        except (ValueError, OSError) as exc:
            print(f"cannot evaluate {name} at {path}: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(result, indent=2, default=str) if args.json else format_report(result))
        return 0
    from detectors.evaluation.score import evaluate, format_table

    if args.quick:
        result = evaluate(elders=6, scored_days=5, warmup_days=10, seed=args.seed)
    else:
        result = evaluate(elders=args.elders, scored_days=args.days, warmup_days=args.warmup,
                          seed=args.seed)
    print(json.dumps(result, indent=2, default=str) if args.json else format_table(result))
    return 0


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
    ev = sub.add_parser(
        "eval", help="run labelled event streams through the detectors (sensitivity, false "
        "alerts per elder-day, detection delay); --dataset NAME PATH for a fall dataset")
    ev.add_argument("--dataset", nargs=2, metavar=("NAME", "PATH"),
                    help="a public accelerometer fall dataset (e.g. umafall PATH, fallalld PATH),"
                    " or `homes PATH`: real homes' sensor logs with silent days injected "
                    "(docs/inactivity.md)")
    ev.add_argument("--homes", help="homes: only these (comma separated file/folder names)")
    ev.add_argument("--max-days", type=float, help="homes: only each home's first N days")
    ev.add_argument("--format", choices=["csv", "casas", "intervals"],
                    help="homes: the files' format (default: recognised from the content)")
    ev.add_argument("--learn", type=int, default=7,
                    help="homes: days for learning before any silent day (default 7)")
    ev.add_argument("--every", type=int, default=4,
                    help="homes: every N-th day after learning is made silent (default 4)")
    ev.add_argument("--noisy-night", action="store_true",
                    help="homes: stress, add a motion sensor firing every night 00-06")
    ev.add_argument("--tz", help="homes: the logs' local time zone (default: the detectors')")
    ev.add_argument("--elders", type=int, default=12, help="simulated elders (default 12)")
    ev.add_argument("--days", type=int, default=14, help="scored days per elder (default 14)")
    ev.add_argument("--warmup", type=int, default=21,
                    help="days of normal life first, to learn routines (default 21)")
    ev.add_argument("--seed", type=int, default=7)
    ev.add_argument("--quick", action="store_true", help="a small run (6 elders x 5 days)")
    ev.add_argument("--json", action="store_true", help="JSON instead of a table")
    ev.add_argument("--rate-hz", type=float, default=50.0,
                    help="with --dataset: the device rate recordings are resampled to (50)")
    ev.add_argument("--tune", action="store_true",
                    help="with --dataset: split subjects and tune the threshold rule on the "
                    "training ones, instead of scoring the shipped detector on every recording")
    ev.set_defaults(func=_eval)

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
