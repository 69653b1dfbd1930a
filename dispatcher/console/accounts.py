"""Staff login accounts: creation, password checks with lockout, and the demo logins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection

from eldercare.security import (
    ROLES,
    Principal,
    hash_password,
    principal_for_account,
    verify_password,
)

MAX_FAILURES = 5  # wrong passwords within FAILURE_WINDOW lock the account for LOCK_FOR
FAILURE_WINDOW = timedelta(minutes=15)
LOCK_FOR = timedelta(minutes=15)
DEMO_PASSWORD = "eldercare-demo"


class LoginRefused(Exception):
    """Wrong username or password (the two are not told apart)."""


class AccountLocked(Exception):
    """Too many wrong passwords: the account is locked for a while."""


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    role: str
    community_id: str | None = None
    district: str = ""
    street: str = ""
    staff_id: str | None = None


def create_account(url: str, account: Account, password: str) -> None:
    """Create or replace a login (the password is stored as an argon2id hash only)."""
    if account.role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {account.role!r}")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    with psycopg.connect(url) as conn:
        conn.execute(*_upsert(account, password))


def _upsert(account: Account, password: str) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT INTO staff_accounts (username, staff_id, display_name, role, community_id,"
        " district, street, password_hash) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (username) DO UPDATE SET staff_id = EXCLUDED.staff_id,"
        " display_name = EXCLUDED.display_name, role = EXCLUDED.role,"
        " community_id = EXCLUDED.community_id, district = EXCLUDED.district,"
        " street = EXCLUDED.street, password_hash = EXCLUDED.password_hash,"
        " failed_logins = 0, first_failed_at = NULL, locked_until = NULL",
        (account.username, account.staff_id, account.display_name, account.role,
         account.community_id, account.district, account.street, hash_password(password)),
    )


async def create_account_async(
    conn: AsyncConnection[Any], account: Account, password: str,
) -> None:
    """`create_account` inside the caller's transaction (the admin API)."""
    if account.role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {account.role!r}")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    await conn.execute(*_upsert(account, password))


_FAILURE = """
UPDATE staff_accounts SET
    failed_logins = CASE WHEN first_failed_at IS NULL OR first_failed_at < now() - %(window)s
                         THEN 1 ELSE failed_logins + 1 END,
    first_failed_at = CASE WHEN first_failed_at IS NULL OR first_failed_at < now() - %(window)s
                           THEN now() ELSE first_failed_at END
WHERE username = %(username)s
RETURNING failed_logins
"""


async def authenticate(conn: AsyncConnection[Any], username: str, password: str) -> Principal:
    """The principal for a correct password; raises LoginRefused or AccountLocked. Failures are
    counted per account; the MAX_FAILURES-th within FAILURE_WINDOW locks it for LOCK_FOR."""
    row = await (await conn.execute(
        "SELECT username, display_name, role, community_id, district, street, password_hash,"
        " locked_until > now() AS locked FROM staff_accounts WHERE username = %s AND active"
        " FOR UPDATE", (username,),
    )).fetchone()
    if row is not None and row["locked"]:
        raise AccountLocked(username)
    if not verify_password(row["password_hash"] if row else None, password):
        if row is not None:
            failed = await (await conn.execute(
                _FAILURE, {"window": FAILURE_WINDOW, "username": username}
            )).fetchone()
            if failed is not None and failed["failed_logins"] >= MAX_FAILURES:
                await conn.execute(
                    "UPDATE staff_accounts SET locked_until = now() + %s, failed_logins = 0,"
                    " first_failed_at = NULL WHERE username = %s", (LOCK_FOR, username),
                )
                raise AccountLocked(username)
        raise LoginRefused(username)
    assert row is not None  # a missing account never verifies
    await conn.execute(
        "UPDATE staff_accounts SET failed_logins = 0, first_failed_at = NULL,"
        " locked_until = NULL WHERE username = %s", (username,),
    )
    return await principal_for_account(conn, row)


def demo_accounts(communities: list[tuple[str, str, str, str]]) -> list[Account]:
    """A district admin, a street supervisor and one duty login per demo community
    (communities as (id, name, district, street))."""
    out = [Account("admin", "区管理员", "district_admin")]
    first = communities[0]
    out.append(Account("street", f"{first[3]}督导", "street_supervisor",
                       district=first[2], street=first[3]))
    for cid, name, _district, _street in communities:
        out.append(Account(cid.removeprefix("c-"), f"{name}值班员", "duty_staff",
                           community_id=cid, staff_id=f"{cid}-duty"))
    return out


def ensure_demo_accounts(url: str) -> list[Account]:
    """Create the demo logins (password DEMO_PASSWORD) for `eldercare demo`."""
    from devices.demo import COMMUNITIES

    accounts = demo_accounts([(c[0], c[1], c[2], c[3]) for c in COMMUNITIES])
    for account in accounts:
        create_account(url, account, DEMO_PASSWORD)
    return accounts
