"""PostgreSQL access: connection pools and versioned, idempotent migrations."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from foundation import logs

log = logs.get(__name__)

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 7_420_001  # advisory lock held while migrating, so concurrent starts do not race


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) of every migration shipped in foundation/migrations, in order."""
    root = resources.files("foundation.migrations")
    found = sorted(p.name for p in root.iterdir() if _MIGRATION.match(p.name))
    return [(name.removesuffix(".sql"), root.joinpath(name).read_text("utf-8")) for name in found]


def upgrade(url: str) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction; returns those applied."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
                log.info("migration applied", version=version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied


Connection = psycopg.AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Connection]


def pool(url: str, min_size: int = 1, max_size: int = 5) -> Pool:
    """An async pool of dict-row connections (open it with `await pool.open()`)."""
    return AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        connection_class=psycopg.AsyncConnection[DictRow],
        kwargs={"autocommit": False, "row_factory": dict_row},
    )


RV = TypeVar("RV")
# psycopg wakes every waiting async connection 10 times a second (its 0.1 s wait interval: a
# chance for Ctrl-C in blocking code; asyncio cancels a waiting task without it). A LISTEN
# connection waits all the time, so each one was a 10 Hz timer in an otherwise idle process.
LISTEN_WAIT_INTERVAL_S = 60.0


class ListenConnection(psycopg.AsyncConnection[Any]):
    """An async connection for LISTEN and `notifies()`: it sleeps until its socket has
    something to read (a notification, the server going away) instead of every 0.1 s."""

    async def wait(self, gen: PQGen[RV], interval: float = LISTEN_WAIT_INTERVAL_S,
                   timeout: float | None = None) -> RV:
        return await super().wait(gen, interval=interval, timeout=timeout)


async def check(url: str) -> None:
    """Raise unless the database answers."""
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=2) as conn:
        await conn.execute("SELECT 1")


# A commit that is not waited for (synchronous_commit = off) is on disk once any later
# synchronous commit that wrote WAL has returned: the WAL is one stream, flushed in order.
COMMIT_UNFLUSHED = "SET LOCAL synchronous_commit = off"


async def flush_commits(conn: Connection) -> None:
    """Return once every transaction committed before this call is on disk (and on synchronous
    standbys): a synchronous commit of a transaction that wrote one WAL record (a logical
    message nobody decodes), which flushes the WAL up to its own commit and so past every
    earlier one. For transactions committed with `COMMIT_UNFLUSHED`. `conn` must not be in a
    transaction (this one would then be a savepoint, committing nothing)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("flush_commits needs a connection outside any transaction")
    async with conn.transaction():
        await conn.execute("SELECT pg_logical_emit_message(true, 'eldercare.flush', '')")
