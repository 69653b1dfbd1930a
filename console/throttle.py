"""Login throttling: wrong passwords counted per (account, address), per address and per
account (table `login_failures`, see migration 0006).

One address guessing locks only itself out of that account, so duty staff at their own desk
can still sign in during an attack; an address trying many accounts is refused altogether;
an account guessed at from many addresses is locked everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

WINDOW = timedelta(minutes=15)  # failures are counted within this window
LOCK_FOR = timedelta(minutes=15)


@dataclass(frozen=True)
class Limit:
    name: str       # pair, address, account
    failures: int   # this many within WINDOW locks for LOCK_FOR
    account_wide: bool  # True: refused as a locked account (423); False: throttled (429)


PAIR = Limit("pair", 5, True)
ADDRESS = Limit("address", 20, False)
ACCOUNT = Limit("account", 50, True)


class Refused(Exception):
    """A lock is in force for this login attempt."""

    def __init__(self, limit: Limit) -> None:
        super().__init__(limit.name)
        self.limit = limit


def _keys(username: str, address: str) -> list[tuple[Limit, str, str]]:
    return [(PAIR, username, address), (ADDRESS, "", address), (ACCOUNT, username, "")]


async def check(conn: AsyncConnection[Any], username: str, address: str) -> None:
    """Raise `Refused` if any lock covering this attempt is in force."""
    keys = _keys(username, address)
    rows = await (await conn.execute(
        "SELECT username, address FROM login_failures WHERE locked_until > now()"
        " AND (username, address) IN ((%s, %s), (%s, %s), (%s, %s))",
        [x for _, u, a in keys for x in (u, a)],
    )).fetchall()
    locked = {(r["username"], r["address"]) for r in rows}
    for limit, u, a in keys:
        if (u, a) in locked:
            raise Refused(limit)


_COUNT = """
INSERT INTO login_failures AS f (username, address, failures) VALUES (%(u)s, %(a)s, 1)
ON CONFLICT (username, address) DO UPDATE SET
    failures = CASE WHEN f.first_failed_at < now() - %(window)s THEN 1 ELSE f.failures + 1 END,
    first_failed_at = CASE WHEN f.first_failed_at < now() - %(window)s
                           THEN now() ELSE f.first_failed_at END
RETURNING failures
"""


async def failed(conn: AsyncConnection[Any], username: str, address: str) -> None:
    """Count one wrong password (known account or not: the answer must not tell them apart);
    raise `Refused` when this failure reaches a limit, which then holds for LOCK_FOR."""
    reached: Limit | None = None
    for limit, u, a in _keys(username, address):
        row = await (await conn.execute(_COUNT, {"u": u, "a": a, "window": WINDOW})).fetchone()
        if row is not None and row["failures"] >= limit.failures:
            await conn.execute(
                "UPDATE login_failures SET locked_until = now() + %s, failures = 0,"
                " first_failed_at = now() WHERE username = %s AND address = %s",
                (LOCK_FOR, u, a))
            reached = reached or limit
    await conn.execute(
        "DELETE FROM login_failures WHERE first_failed_at < now() - %s"
        " AND (locked_until IS NULL OR locked_until < now())", (WINDOW + LOCK_FOR,))
    if reached is not None:
        raise Refused(reached)


async def succeeded(conn: AsyncConnection[Any], username: str, address: str) -> None:
    """A right password clears that (account, address) count; the others keep counting."""
    await conn.execute(
        "DELETE FROM login_failures WHERE username = %s AND address = %s", (username, address))


UNLOCK = "DELETE FROM login_failures WHERE username = %s"  # every count for the account


async def unlock(conn: AsyncConnection[Any], username: str) -> None:
    """A district admin resets the password or unlocks: every count for the account goes."""
    await conn.execute(UNLOCK, (username,))
