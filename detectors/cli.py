"""`eldercare` subcommands of the detectors package: `eldercare eval`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _eval(args: argparse.Namespace, settings: object) -> int:
    if args.dataset:
        try:
            from detectors.falls.evaluate import evaluate_dataset, format_report
        except ImportError as exc:
            print(f"fall dataset evaluation is not available: {exc}", file=sys.stderr)
            return 2
        name, path = args.dataset
        try:
            result = evaluate_dataset(name, Path(path))
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands to the `eldercare` parser."""
    ev = sub.add_parser(
        "eval", help="run labelled event streams through the detectors (sensitivity, false "
        "alerts per elder-day, detection delay); --dataset NAME PATH for a fall dataset")
    ev.add_argument("--dataset", nargs=2, metavar=("NAME", "PATH"),
                    help="a public accelerometer fall dataset (e.g. umafall PATH, fallalld PATH)")
    ev.add_argument("--elders", type=int, default=12, help="simulated elders (default 12)")
    ev.add_argument("--days", type=int, default=14, help="scored days per elder (default 14)")
    ev.add_argument("--warmup", type=int, default=21,
                    help="days of normal life first, to learn routines (default 21)")
    ev.add_argument("--seed", type=int, default=7)
    ev.add_argument("--quick", action="store_true", help="a small run (6 elders x 5 days)")
    ev.add_argument("--json", action="store_true", help="JSON instead of a table")
    ev.set_defaults(func=_eval)
