"""`eldercare registry ...`: ledger import, device MQTT logins, readings maintenance."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from foundation.config import Settings


def _import(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from devices import ledger_import, provisioning
    from foundation.security import SYSTEM

    path = Path(args.file)
    content = path.read_bytes()

    async def go() -> ledger_import.ImportResult:
        async with await psycopg.AsyncConnection.connect(
                settings.database_url, row_factory=dict_row) as conn, conn.transaction():
            return await ledger_import.import_ledger(
                conn, path.name, content, args.kind, SYSTEM)

    try:
        result = asyncio.run(go())
    except ledger_import.LedgerRejected as exc:
        print(f"{path}: {len(exc.errors)} errors, nothing imported:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    provisioning.publish(settings.database_url, settings.mqtt_auth_dir)
    print(json.dumps({"imported": result.counts, "mqtt": result.mqtt_logins},
                     ensure_ascii=False, indent=2))
    return 0


def _credentials(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from devices import provisioning

    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            "SELECT e.community_id FROM devices d JOIN elders e ON e.id = d.elder_id"
            " WHERE d.id = %s AND d.active", (args.device_id,)).fetchone()
        if row is None:
            print(f"no active device {args.device_id!r}", file=sys.stderr)
            return 1
        password, hashed = provisioning.new_credentials()
        conn.execute(provisioning.ISSUE_SQL, (args.device_id, hashed))
    provisioning.publish(settings.database_url, settings.mqtt_auth_dir)
    print(json.dumps({"username": provisioning.device_username(args.device_id),
                      "password": password, "topic_prefix":
                      provisioning.device_topic_prefix(str(row[0]), args.device_id) + "/"}))
    return 0


def _mqtt_auth(args: argparse.Namespace, settings: Settings) -> int:
    from devices import provisioning

    auth_dir = args.dir or settings.mqtt_auth_dir
    if not auth_dir:
        print("give a directory or set ELDERCARE_MQTT_AUTH_DIR", file=sys.stderr)
        return 2
    if args.service_password:
        provisioning.init_auth_dir(Path(auth_dir), args.service_password)
    count = provisioning.publish(settings.database_url, auth_dir)
    print(f"{auth_dir}: {count} device logins; include in mosquitto.conf:\n"
          + provisioning.mosquitto_auth_config(
              Path(auth_dir), tls_dir=Path(args.tls_dir) if args.tls_dir else None))
    return 0


def _maintain(args: argparse.Namespace, settings: Settings) -> int:
    from devices import privacy
    from devices.readings import partitions

    asyncio.run(partitions.maintain(settings.database_url, settings.readings_retention_days,
                                    settings.readings_days_ahead))

    async def retention() -> dict[str, int]:
        async with await _connect(settings) as conn, conn.transaction():
            return await privacy.enforce_retention(conn, settings)

    print(json.dumps({"retention": asyncio.run(retention())}))
    return 0


def _connect(settings: Settings) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row)


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from devices import privacy

    async def go() -> dict[str, Any] | None:
        async with await _connect(settings) as conn, conn.transaction():
            return await privacy.export_elder(conn, args.elder_id, _operator())

    data = asyncio.run(go())
    if data is None:
        print(f"no elder {args.elder_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    return 0


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from devices import privacy, provisioning

    async def go() -> dict[str, int]:
        async with await _connect(settings) as conn, conn.transaction():
            return await privacy.erase_elder(conn, args.elder_id, _operator())

    try:
        done = asyncio.run(go())
    except privacy.ErasureRefused as refused:
        print(str(refused), file=sys.stderr)
        return 1
    provisioning.publish(settings.database_url, settings.mqtt_auth_dir)  # its devices' logins go
    print(json.dumps({"erased": args.elder_id, **done}))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands to the `eldercare` parser."""
    reg = sub.add_parser("registry", help="registry of elders, contacts, devices, staff")
    rsub = reg.add_subparsers(dest="registry_command", required=True)
    imp = rsub.add_parser("import", help="import a CSV or XLSX ledger (all or nothing)")
    imp.add_argument("file")
    imp.add_argument("--kind", default="", choices=["", "elders", "contacts", "devices"],
                     help="what a CSV file holds (default: guessed from its header)")
    imp.set_defaults(func=_import, needs_database=True)
    cred = rsub.add_parser("credentials", help="issue a device a new MQTT password")
    cred.add_argument("device_id")
    cred.set_defaults(func=_credentials, needs_database=True)
    auth = rsub.add_parser("mqtt-auth", help="render the broker's password file and ACL")
    auth.add_argument("dir", nargs="?", default="")
    auth.add_argument("--service-password", default="",
                      help="(re)set the platform service account's password")
    auth.add_argument("--tls-dir", default="",
                      help="certificates from deploy/make-certs.sh: the listeners speak TLS")
    auth.set_defaults(func=_mqtt_auth, needs_database=True)
    rsub.add_parser("maintain-readings", help="create readings partitions ahead, drop old ones,"
                    " apply the retention settings (run daily)")\
        .set_defaults(func=_maintain, needs_database=True)
    export = rsub.add_parser("export", help="JSON of everything held on one elder (audited)")
    export.add_argument("elder_id")
    export.set_defaults(func=_export, needs_database=True)
    erase = rsub.add_parser("erase", help="erase one elder's personal data; incidents stay"
                            " anonymised (audited)")
    erase.add_argument("elder_id")
    erase.set_defaults(func=_erase, needs_database=True)
