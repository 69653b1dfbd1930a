"""`eldercare` subcommands of the ingest package."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from foundation import logs
from foundation.config import Settings, child_env

log = logs.get(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands to the `eldercare` parser."""
    p = sub.add_parser(
        "ingest", help="run N ingest worker processes sharing the MQTT load (shared subscription)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(func=_ingest)


def worker_command() -> list[str]:
    return [sys.executable, "-m", "eldercare.cli", "service", "ingest"]


def worker_env(settings: Settings, worker: int) -> dict[str, str]:
    """The worker's environment: this process's settings plus its worker number."""
    env = child_env(settings)
    env["ELDERCARE_INGEST_WORKER"] = str(worker)
    return env


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Start the workers, restart any that dies, stop them all on SIGINT/SIGTERM."""
    from foundation import procs

    if args.workers > 1 and not settings.mqtt_shared_group:
        print("--workers > 1 needs ELDERCARE_MQTT_SHARED_GROUP (else each gets every message)",
              file=sys.stderr)
        return 2
    if args.workers > 1 and settings.mqtt_protocol != "5":
        print("--workers > 1 needs MQTT 5 shared subscriptions (ELDERCARE_MQTT_PROTOCOL=5)",
              file=sys.stderr)
        return 2
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    workers: dict[int, subprocess.Popen[bytes]] = {}
    while not stopping:
        for n in range(args.workers):
            if n not in workers or workers[n].poll() is not None:
                if n in workers:
                    log.warning("ingest worker exited; restarting", worker=n,
                                code=workers[n].returncode)
                workers[n] = subprocess.Popen(
                    worker_command(), env=worker_env(settings, n), stdin=subprocess.DEVNULL,
                    preexec_fn=procs._die_with_parent,
                )
        time.sleep(0.5)
    for w in workers.values():
        w.send_signal(signal.SIGTERM)
    for w in workers.values():
        procs.stop(w)
    return 0
