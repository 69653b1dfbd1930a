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
    if args.compare_only:
        return _compare_falls(args, sources)
    if args.classifier != "hgb":
        print(f"--model {args.classifier} is an experiment that does not ship (its measured "
              "comparison is in docs/falls-model-card.md): run it with --compare-only",
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


def _compare_falls(args: argparse.Namespace, sources: dict[str, Path]) -> int:
    """`--compare-only`: the shipped trees against a small 1-D CNN and their ensemble on the
    trainer's folds; writes no model file."""
    from detectors.falls import cnn_compare, training

    positions = args.positions.split(",") if args.positions else list(training.MODEL_POSITIONS)
    unknown = sorted(set(positions) - set(training.MODEL_POSITIONS))
    if unknown:
        print(f"unknown position(s) {', '.join(unknown)}; known: "
              f"{', '.join(training.MODEL_POSITIONS)}", file=sys.stderr)
        return 2
    try:
        report = cnn_compare.compare(
            sources, positions, seed=training.SEED if args.seed is None else args.seed,
            folds=training.FOLDS if args.folds is None else args.folds,
            epochs=args.epochs or cnn_compare.EPOCHS)
    except (RuntimeError, ImportError) as exc:
        print(f"the comparison needs scikit-learn and PyTorch: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"cannot compare the fall models: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else cnn_compare.format_comparison(report))
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
    falls.add_argument("--model", dest="classifier",
                       choices=("hgb", "cnn", "ensemble"), default="hgb",
                       help="hgb: the shipped gradient-boosted trees (default); cnn, ensemble: "
                       "a small 1-D CNN on the raw window, alone or averaged with the trees, "
                       "measured with --compare-only (needs PyTorch; nothing ships)")
    falls.add_argument("--compare-only", action="store_true",
                       help="measure the trees, the CNN and their ensemble on the same "
                       "subject folds and write no model file")
    falls.add_argument("--positions", default=None, metavar="LIST",
                       help="with --compare-only: comma-separated positions (default all)")
    falls.add_argument("--epochs", type=int, default=None,
                       help="with --compare-only: CNN training epochs (default 20)")
    falls.set_defaults(func=_train_falls)
