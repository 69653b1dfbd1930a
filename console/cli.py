"""`eldercare staff add|demo`: console login accounts from the command line.

Wire with `register(sub)` like the other packages' CLIs (`eldercare/cli.py`)."""

from __future__ import annotations

import argparse
import getpass

from console.accounts import DEMO_PASSWORD, Account, create_account, ensure_demo_accounts
from foundation.config import Settings
from foundation.security import ROLES


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    staff = sub.add_parser("staff", help="console login accounts")
    cmds = staff.add_subparsers(dest="staff_cmd", required=True)
    add = cmds.add_parser("add", help="create or reset a login (asks for the password)")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="display name, e.g. 王值班")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--community", help="community id (duty_staff)")
    add.add_argument("--district", default="", help="district (street_supervisor, optional;"
                     " district_admin: limits the admin to it, empty: every district)")
    add.add_argument("--street", default="", help="street (street_supervisor)")
    add.set_defaults(func=_add, needs_database=True)
    demo = cmds.add_parser("demo", help=f"the demo logins, password {DEMO_PASSWORD}")
    demo.set_defaults(func=_demo, needs_database=True)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    password = getpass.getpass("password: ")
    if password != getpass.getpass("again: "):
        print("passwords differ")
        return 1
    create_account(settings.database_url, Account(
        args.username, args.name, args.role, args.community, args.district, args.street,
    ), password)
    print(f"login {args.username} ({args.role}) saved")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    for a in ensure_demo_accounts(settings.database_url):
        print(f"{a.username}\t{a.role}\t{a.community_id or a.street or '*'}")
    return 0
