"""Staff login accounts: creation, password checks with lockout, and the demo logins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection

from console import throttle
from foundation.security import (
    ROLES,
    Principal,
    hash_password,
    hash_password_off_loop,
    principal_for_account,
    verify_password_off_loop,
)

DEMO_PASSWORD = "eldercare-demo"


class LoginRefused(Exception):
    """Wrong username or password (the two are not told apart)."""


class AccountLocked(Exception):
    """Too many wrong passwords for this account (from this address, or from everywhere)."""


class AddressThrottled(Exception):
    """Too many wrong passwords from this address, whichever accounts they were for."""


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
        conn.execute(*_upsert(account, hash_password(password)))
        conn.execute(throttle.UNLOCK, (account.username,))
        conn.execute(END_SESSIONS, (account.username,))


# A new password ends every session of the account: whoever knew the old one (and logged in
# with it) is out at once, not at the end of the shift.
END_SESSIONS = "DELETE FROM staff_sessions WHERE username = %s"


def _upsert(account: Account, password_hash: str) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT INTO staff_accounts (username, staff_id, display_name, role, community_id,"
        " district, street, password_hash) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (username) DO UPDATE SET staff_id = EXCLUDED.staff_id,"
        " display_name = EXCLUDED.display_name, role = EXCLUDED.role,"
        " community_id = EXCLUDED.community_id, district = EXCLUDED.district,"
        " street = EXCLUDED.street, password_hash = EXCLUDED.password_hash",
        (account.username, account.staff_id, account.display_name, account.role,
         account.community_id, account.district, account.street, password_hash),
    )


async def create_account_async(
    conn: AsyncConnection[Any], account: Account, password: str,
) -> None:
    """`create_account` inside the caller's transaction (the admin API)."""
    if account.role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {account.role!r}")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    await conn.execute(*_upsert(account, await hash_password_off_loop(password)))
    await throttle.unlock(conn, account.username)
    await conn.execute(END_SESSIONS, (account.username,))


async def authenticate(
    conn: AsyncConnection[Any], username: str, password: str, address: str = "",
) -> Principal:
    """The principal for a correct password; raises LoginRefused, AccountLocked or
    AddressThrottled. Wrong passwords are counted by `throttle` per (account, address), per
    address and per account."""
    try:
        await throttle.check(conn, username, address)
    except throttle.Refused as refused:
        raise _refusal(refused, username) from None
    row = await (await conn.execute(
        "SELECT username, display_name, role, community_id, district, street, password_hash"
        " FROM staff_accounts WHERE username = %s AND active", (username,),
    )).fetchone()
    if not await verify_password_off_loop(row["password_hash"] if row else None, password):
        try:
            await throttle.failed(conn, username, address)
        except throttle.Refused as refused:
            raise _refusal(refused, username) from None
        raise LoginRefused(username)
    assert row is not None  # a missing account never verifies
    await throttle.succeeded(conn, username, address)
    return await principal_for_account(conn, row)


def _refusal(refused: throttle.Refused, username: str) -> Exception:
    if refused.limit.account_wide:
        return AccountLocked(username)
    return AddressThrottled(username)


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
