"""The `eldercare` command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from foundation import logs
from foundation.config import Settings, get_settings


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from eldercare.stack.supervisor import up

    return up(settings, demo=False)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from eldercare.stack.supervisor import up

    return up(settings, demo=True)


def _service(args: argparse.Namespace, settings: Settings) -> int:
    from eldercare.services import run_service

    run_service(args.name, settings)
    return 0


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from foundation import db

    applied = db.upgrade(settings.database_url)
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from devices.demo import demo_population
    from devices.registry import save

    save(settings.database_url, demo_population())
    return 0


def _deadletters(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from foundation import deadletter_archive

    rows = deadletter_archive.recent(settings.database_url, args.limit, args.source)
    for row in rows:
        original = bytes(row.pop("payload"))
        if args.json:
            row["payload"] = original.decode("utf-8", errors="backslashreplace")
            print(json.dumps(row, ensure_ascii=False, default=str))
            continue
        when = row["received_at"] or row["archived_at"]
        cut = " (truncated)" if row["payload_truncated"] else ""
        print(f"{when:%Y-%m-%d %H:%M:%S%z}  {row['source']}  {row['reason']}  {row['topic']}"
              f"  {row['payload_size']} B{cut}\n    {row['detail'][:300]}\n"
              f"    {original[:200]!r}")
    if not args.json:
        print(f"{len(rows)} dead letter(s), newest first", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eldercare", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the platform (embedded services where no URL is set)")\
        .set_defaults(func=_up)
    sub.add_parser("demo", help="`up` plus a demo community with simulated daily life")\
        .set_defaults(func=_demo)
    svc = sub.add_parser("service", help="run one service in the foreground")
    svc.add_argument("name", choices=[
        "ingest", "detectors", "dispatcher", "console", "webhooks", "demo-life", "store"])
    svc.set_defaults(func=_service)
    dbp = sub.add_parser("db", help="database maintenance")
    dbsub = dbp.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="apply pending migrations (idempotent)")\
        .set_defaults(func=_db_upgrade, needs_database=True)
    sub.add_parser("seed-demo", help="write the demo community into the database")\
        .set_defaults(func=_seed_demo)
    dead = sub.add_parser("deadletters", help="the latest dead letters (messages that were not"
                          " accepted, with the reason), from the database")
    dead.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    dead.add_argument("--source", default=None, help="only from this source (e.g. mqtt, http,"
                      " dispatcher, detectors, store)")
    dead.add_argument("--json", action="store_true", help="one JSON object per line")
    dead.set_defaults(func=_deadletters, needs_database=True)
    # Each package adds its own subcommands (one module each, so they never collide).
    from console import cli as console_cli
    from detectors import cli as detectors_cli
    from devices import cli as devices_cli
    from dispatcher import cli as dispatcher_cli
    from eldercare.bench import cli as bench_cli
    from ingest import cli as ingest_cli
    from simulators import cli as simulators_cli

    for module in (devices_cli, ingest_cli, detectors_cli, dispatcher_cli, console_cli,
                   simulators_cli, bench_cli):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:  # pydantic's ValidationError: say what to set, no traceback
        errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
        for e in errors or [{"msg": str(exc)}]:
            where = ".".join(str(p) for p in e.get("loc", ()))
            print(f"eldercare: configuration error{f' in {where}' if where else ''}:"
                  f" {e['msg']}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, "eldercare")
    if getattr(args, "needs_database", False) and not settings.database_url:
        from foundation import stack_state as state  # the local stack `eldercare up` runs, if any

        settings = state.join(settings, ("database_url",)) or settings
    if getattr(args, "needs_database", False) and not settings.database_url:
        print("ELDERCARE_DATABASE_URL is not set: this command works on a running platform's"
              " database (`eldercare up` prints its URL)", file=sys.stderr)
        return 2
    result: int = args.func(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
