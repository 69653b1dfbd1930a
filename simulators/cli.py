"""`eldercare` subcommands of the simulators package: scenario run, record, replay, simulate."""

from __future__ import annotations

import argparse
import asyncio
import signal
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
    seconds = asyncio.run(recording.replay(records, settings.mqtt_url, args.speed,
                                           skip_retained=not args.include_retained))
    err.print(f"replayed {len(records)} messages in {seconds:.1f}s")
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands to the `eldercare` parser."""
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
    rep.add_argument("--speed", type=float, default=1.0)
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


