"""`eldercare` subcommands of the simulators package: scenario run, record, replay, simulate, and
`eval` (the detectors' offline evaluation on simulated streams and homes, or on datasets)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

from foundation.config import Settings

err = Console(stderr=True)


def _join(settings: Settings, *names: str) -> Settings | None:
    """`settings` with the URLs in `names` that are not set taken from the local stack that
    `eldercare up` recorded in the data dir; None (after saying so) when there is none."""
    from foundation import stack_state as state

    joined = state.join(settings, names)
    if joined is None:
        missing = [f"ELDERCARE_{n.upper()}" for n in names if not getattr(settings, n)]
        err.print(f"[red]no running eldercare stack found[/red] in {settings.data_dir.resolve()}"
                  ": start one with `eldercare up` (or `eldercare demo`) in this directory, or "
                  f"set {', '.join(missing)} to point at one")
    return joined


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _scenario_run(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.runner import render, run_files

    joined = _join(settings, "database_url", "mqtt_url", "kafka_bootstrap")
    if joined is None:
        return 2
    settings = joined
    available = set(args.available.split(",")) if args.available is not None else None
    reports = asyncio.run(run_files([Path(p) for p in args.files], settings, available,
                                    ahead=args.ahead))
    render(reports)
    return 0 if all(r.ok or r.skipped for r in reports) else 1


def _record(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.recording import record

    joined = _join(settings, "mqtt_url")
    if joined is None:
        return 2
    settings = joined

    async def main() -> int:
        stop = _stop_on_signals()
        if args.seconds:
            asyncio.get_running_loop().call_later(args.seconds, stop.set)
        with Path(args.out).open("w", encoding="utf-8") as out:  # noqa: ASYNC230 (opened once)
            return await record(settings.mqtt_url, out, stop, args.topic, args.limit)

    count = asyncio.run(main())
    err.print(f"recorded {count} messages to {args.out}")
    return 0


def _speed(text: str) -> str:
    if text != "max" and not float(text) > 0:
        raise argparse.ArgumentTypeError("a positive number or `max`")
    return text


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from simulators import recording
    from simulators.accel import read_csv

    joined = _join(settings, "mqtt_url")
    if joined is None:
        return 2
    settings = joined
    path = Path(args.file)
    if path.suffix.lower() == ".csv":
        if not (args.community and args.device):
            err.print("[red]a CSV replay needs --community and --device[/red]")
            return 2
        windows = read_csv(path, args.unit, args.time_unit, args.window_s)
        records = recording.accel_records(windows, args.community, args.device, time.time())
    else:
        records = recording.read(path)
    renames = [(old, new) for old, _, new in (r.partition("=") for r in args.rename)]
    records = recording.retag(records, renames)
    if args.retime:
        records = recording.retime(records, time.time())
    speed = math.inf if args.speed == "max" else float(args.speed)
    seconds = asyncio.run(recording.replay(records, settings.mqtt_url, speed,
                                           skip_retained=not args.include_retained))
    err.print(f"replayed {len(records)} messages in {seconds:.1f}s "
              f"({len(records) / max(seconds, 1e-9):.0f} msg/s)")
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.load import simulate

    joined = _join(settings, "database_url", "mqtt_url")
    if joined is None:
        return 2
    settings = joined
    result = asyncio.run(simulate(settings, args.elders, args.rate, args.seconds,
                                  args.communities, args.connections, args.seed))
    Console().print(
        f"target {result.target_rate:.0f} msg/s · achieved [bold]{result.achieved_rate:.0f} "
        f"msg/s[/bold] ({result.achieved_rate / result.target_rate:.2f} of target) · "
        f"{result.published} messages in {result.seconds:.1f}s · {result.elders} elders · "
        f"clock ×{result.speed:.0f}")
    return 0


def _eval_homes(args: argparse.Namespace, path: Path) -> int:
    from detectors.config import DetectorConfig
    from detectors.evaluation.homes import load_homes
    from detectors.evaluation.silent_days import evaluate_homes, format_report

    names = [n for n in (args.homes or "").split(",") if n] or None
    try:
        if str(path).startswith("sim:"):
            from simulators.evaluation import simulated_homes

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
    from detectors.evaluation.score import format_table
    from simulators.evaluation import evaluate

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

    sc = sub.add_parser("scenario", help="scenario files against the running stack")
    scsub = sc.add_subparsers(dest="scenario_command", required=True)
    run = scsub.add_parser("run", help="run scenario YAML files; non-zero exit on any mismatch")
    run.add_argument("files", nargs="+")
    run.add_argument("--available", default=None, metavar="REQ,REQ",
                     help="skip scenarios whose `requires` are not all in this list")
    run.add_argument("--ahead", action="store_true",
                     help="chain the simulated spans from now into the future instead of "
                          "ending them before now; needed for silence detectors (inactivity, "
                          "offline, check-in); the stack needs a wide "
                          "ELDERCARE_INGEST_MAX_FUTURE_S")
    run.set_defaults(func=_scenario_run)

    rec = sub.add_parser("record", help="capture live MQTT traffic to JSONL")
    rec.add_argument("--out", "-o", required=True)
    rec.add_argument("--topic", default="eldercare/v1/#")
    rec.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    rec.add_argument("--limit", type=int, default=None, help="stop after this many messages")
    rec.set_defaults(func=_record)

    rep = sub.add_parser("replay", help="play back a JSONL recording or an accelerometer CSV")
    rep.add_argument("file")
    rep.add_argument("--speed", default="1.0", type=_speed,
                     help="times faster than recorded, or `max`: as fast as the broker takes")
    rep.add_argument("--retime", action="store_true",
                     help="shift the payloads' device times so the recording ends now (a "
                          "month's replay needs ELDERCARE_INGEST_MAX_PAST_S to cover it)")
    rep.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                     help="rewrite topics (substring), e.g. a community or device id")
    rep.add_argument("--include-retained", action="store_true",
                     help="also replay retained messages received at subscribe time")
    rep.add_argument("--community", help="CSV: the device's community id")
    rep.add_argument("--device", help="CSV: the cane or watch id")
    rep.add_argument("--unit", choices=["g", "ms2"], default="g", help="CSV: x,y,z unit")
    rep.add_argument("--time-unit", choices=["s", "ms"], default="s", help="CSV: t unit")
    rep.add_argument("--window-s", type=float, default=4.0, help="CSV: seconds per window")
    rep.set_defaults(func=_replay)

    sim = sub.add_parser("simulate", help="load: a population's routines at a target rate")
    sim.add_argument("--elders", type=int, default=100)
    sim.add_argument("--rate", type=float, default=500.0, help="target messages per second")
    sim.add_argument("--seconds", type=float, default=30.0, help="how long to publish")
    sim.add_argument("--communities", type=int, default=2)
    sim.add_argument("--connections", type=int, default=8, help="MQTT connections to share")
    sim.add_argument("--seed", type=int, default=1)
    sim.set_defaults(func=_simulate)


