"""`eldercare bench sos|ingest|detect|store|idle|chaos|replay|soak|compare|all [--json]
[--quick] [--out DIR]`, and `eldercare bench report` (the history of every run, plotted over
commits)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from foundation.config import Settings


def _report(args: argparse.Namespace, history_file: Path) -> int:
    from eldercare.bench import history, report

    entries, unreadable = history.read(history_file)
    out = report.write(entries, args.report_out or history_file.with_name("report.html"),
                       unreadable)
    print(f"{len(entries)} runs from {history_file} -> {out}")
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from eldercare.bench import harness, history

    history_file: Path = args.history or settings.bench_history
    if args.name == "report":
        return _report(args, history_file)

    if args.name == "compare":
        from eldercare.bench.compare import resolve

        try:
            resolve(args.against)
        except (ValueError, OSError) as exc:
            print(f"eldercare bench compare: --against: {exc}", file=sys.stderr)
            return 2
    names = list(harness.BENCHES) if args.name == "all" else [args.name]
    out_dir: Path = args.out or settings.data_dir / "bench"
    # With --json, stdout carries exactly one JSON object: everything else goes to stderr.
    # Wide enough for the figure names when stdout is a file or a pipe (rich assumes 80).
    width = max(110, shutil.get_terminal_size((120, 24)).columns)
    console = Console(stderr=args.json, width=width)
    progress = Console(stderr=True)
    env = harness.environment()
    from foundation import stack_state as state

    running = state.read(settings.data_dir)
    if running is not None:  # benches measure a stack of their own, on a quiet machine
        progress.print(f"[yellow]note:[/yellow] a local stack is running (`eldercare up`, pid "
                       f"{running.pid}); each bench starts its own, and the running one shares "
                       "the CPU: expect lower figures")
    started = time.monotonic()
    results = []
    for name in names:
        progress.print(f"[bold]bench {name}[/bold]{' (quick)' if args.quick else ''} …")
        # `all` keeps its promise of finishing in under 10 minutes: a bench gets what is left.
        left = args.budget - (time.monotonic() - started) if args.name == "all" else args.timeout
        if left < 5:
            result = harness.BenchResult(name, "skipped",
                                         error=f"not run: the {args.budget:.0f} s budget is spent")
        else:
            chaos, compare = name == "chaos", name == "compare"
            result = harness.run_one(name, args.quick, args.package, min(args.timeout, left),
                                     cases=args.cases if chaos else "",
                                     twilio_delay_s=args.twilio_delay if chaos else 0.0,
                                     against=args.against if compare else "",
                                     rate=args.rate if compare else 0.0)
        if result.status == "ok":
            png = harness.plot(result, out_dir)
            result.plot = str(png) if png else ""
        if result.status not in {"missing", "skipped"}:
            harness.write_json(result, env, args.quick, out_dir)
        if result.status == "ok":
            history.append(history_file, history.entry(result, env, args.quick))
        progress.print(f"  {name}: {result.status} in {result.seconds:.1f} s"
                       + (f" — {result.error}" if result.error else ""))
        results.append(result)
    total = round(time.monotonic() - started, 1)
    console.print(harness.table(results))
    if args.name == "all":
        console.print("summary: " + ", ".join(f"{r.name}={r.status} (exit {r.exit_code})"
                                              for r in results) + f"; {total} s; JSON in {out_dir}")
    if args.json:
        body: dict[str, Any]
        if args.name == "all":
            body = {"quick": args.quick, "seconds": total, "environment": env,
                    "benches": {r.name: r.summary() for r in results}}
        else:
            r = results[0]
            body = {**r.figures, "status": r.status, "error": r.error, "seconds": r.seconds,
                    "environment": env}
        sys.stdout.write(json.dumps(body, ensure_ascii=False, default=str) + "\n")
    if args.name != "all":
        return results[0].exit_code
    return max((r.exit_code for r in results), default=0)


def _cases(value: str) -> str:
    """`--cases`: a comma list of chaos cases, each one `eldercare bench chaos` knows."""
    from eldercare.bench.chaos import CASES

    names = [c.strip() for c in value.split(",") if c.strip()]
    unknown = [c for c in names if c not in ("none", *CASES)]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown case {', '.join(unknown)}; known: none, {', '.join(CASES)}")
    return ",".join(names)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bench` to the `eldercare` parser."""
    from eldercare.bench.harness import BENCHES, ON_DEMAND, PACKAGE

    p = sub.add_parser("bench", help="run benchmarks: figures, JSON files and plots")
    p.add_argument("name", choices=[*BENCHES, *ON_DEMAND, "all", "report"],
                   help=f"which bench (all: every one but {', '.join(ON_DEMAND)}; report: plot"
                   " the history of every run)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="short runs (smoke test, CI)")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for <name>.json and <name>.png (default: DATA_DIR/bench)")
    p.add_argument("--cases", default="", type=_cases,
                   help="chaos only: the cases to run, a comma list (e.g. none,dispatcher,ingest;"
                   " default: every case, after the baseline `none`)")
    p.add_argument("--twilio-delay", type=float, default=0.0, metavar="S",
                   help="chaos only: the Twilio mock answers each request S seconds late (a"
                   " slow or queueing provider)")
    p.add_argument("--against", default="HEAD", metavar="REV",
                   help="compare only: the commit whose services the other stack runs"
                   " (default: HEAD, i.e. this tree's uncommitted changes against their base)")
    p.add_argument("--rate", type=float, default=0.0, metavar="MSG_PER_S",
                   help="compare only: background heart-rate messages per second on each stack"
                   " while pressing (default: none, at rest)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per bench")
    p.add_argument("--budget", type=float, default=570.0,
                   help="seconds `all` may take in total (a bench past it is stopped)")
    p.add_argument("--history", type=Path, default=None,
                   help="JSON lines file each run appends to, and `report` reads"
                   " (default: ELDERCARE_BENCH_HISTORY, bench-results/history.jsonl)")
    p.add_argument("--report-out", type=Path, default=None,
                   help="where `report` writes its HTML page (default: report.html next to"
                   " the history file)")
    p.add_argument("--package", default=PACKAGE, help=argparse.SUPPRESS)  # tests: fake benches
    p.set_defaults(func=_bench)
