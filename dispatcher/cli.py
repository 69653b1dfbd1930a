"""`eldercare policy ...`: escalation policies per elder (overrides of the built-in defaults)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import psycopg
from pydantic import ValidationError

from dispatcher.ladder import MAINTENANCE_KEY, default_policy, parse_policy
from foundation.config import Settings
from foundation.contracts.alerts import Severity

_KEYS = [s.value for s in Severity] + [MAINTENANCE_KEY]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands to the `eldercare` parser."""
    policy = sub.add_parser("policy", help="escalation policies (defaults and per-elder overrides)")
    psub = policy.add_subparsers(dest="policy_command", required=True)
    show = psub.add_parser("show", help="the policy an elder's incidents would get (JSON)")
    show.add_argument("severity", choices=_KEYS)
    show.add_argument("--elder", help="elder id (default: the built-in default)")
    show.set_defaults(func=_show)
    put = psub.add_parser("set", help="store an elder's override from a JSON file ('-': stdin)")
    put.add_argument("elder")
    put.add_argument("severity", choices=_KEYS)
    put.add_argument("file")
    put.set_defaults(func=_set, needs_database=True)
    clear = psub.add_parser("clear", help="remove an elder's override (back to the default)")
    clear.add_argument("elder")
    clear.add_argument("severity", choices=_KEYS)
    clear.set_defaults(func=_clear, needs_database=True)


def _default(key: str) -> str:
    maintenance = key == MAINTENANCE_KEY
    return default_policy(Severity.LOW if maintenance else Severity(key), maintenance)\
        .model_dump_json(indent=2)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    if args.elder and not settings.database_url:
        print("ELDERCARE_DATABASE_URL is not set (needed for --elder)", file=sys.stderr)
        return 2
    if args.elder:
        with psycopg.connect(settings.database_url) as conn:
            row = conn.execute(
                "SELECT policy FROM escalation_policies WHERE elder_id = %s AND severity = %s",
                (args.elder, args.severity),
            ).fetchone()
        if row is not None:
            print(json.dumps(row[0], ensure_ascii=False, indent=2))
            return 0
        print(f"(no override for {args.elder}: the default)", file=sys.stderr)
    print(_default(args.severity))
    return 0


def _set(args: argparse.Namespace, settings: Settings) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    try:
        policy = parse_policy(json.loads(text))
    except (ValueError, ValidationError) as exc:
        print(f"invalid policy: {exc}", file=sys.stderr)
        return 2
    with psycopg.connect(settings.database_url) as conn:
        if conn.execute("SELECT 1 FROM elders WHERE id = %s", (args.elder,)).fetchone() is None:
            print(f"no elder {args.elder!r}", file=sys.stderr)
            return 2
        conn.execute(
            "INSERT INTO escalation_policies (elder_id, severity, policy) VALUES (%s, %s, %s)"
            " ON CONFLICT (elder_id, severity) DO UPDATE SET policy = EXCLUDED.policy,"
            " updated_at = now()", (args.elder, args.severity, policy.model_dump_json()),
        )
    print(f"policy stored for {args.elder} ({args.severity}); open incidents keep theirs")
    return 0


def _clear(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.database_url) as conn:
        cur = conn.execute(
            "DELETE FROM escalation_policies WHERE elder_id = %s AND severity = %s",
            (args.elder, args.severity),
        )
    print("removed" if cur.rowcount else "there was no override")
    return 0
