"""Which elder a device belongs to: a cache of the registry. A device registered after start is
looked up on its first message; unknown ids are remembered briefly so a flood of them cannot
hammer the database; the whole cache is reloaded periodically to see moves and deactivations,
behind the messages (on a connection of its own): no message waits for a reload."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import psycopg

from foundation import logs

log = logs.get(__name__)

RELOAD_RETRY_S = 5.0  # after a failed reload, the old cache serves this long before a retry


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    kind: str
    elder_id: str
    community_id: str
    room: str


_QUERY = """
SELECT d.id, d.kind, d.elder_id, e.community_id, d.room
FROM devices d JOIN elders e ON e.id = d.elder_id
WHERE d.active AND e.active
"""


class DeviceDirectory:
    def __init__(
        self, database_url: str, negative_ttl_s: float = 2.0, reload_every_s: float = 60.0,
    ) -> None:
        self._url = database_url
        self._negative_ttl_s = negative_ttl_s
        self._reload_every_s = reload_every_s
        self._devices: dict[str, DeviceInfo] = {}
        self._unknown: dict[str, float] = {}
        self._loaded_at = float("-inf")
        self._conn: psycopg.AsyncConnection[tuple[str, str, str, str, str]] | None = None
        self._reloading: asyncio.Task[None] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[tuple[str, str, str, str, str]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        return self._conn

    async def load(self) -> None:
        """Read the whole registry (at start: messages wait for it)."""
        self._loaded(await (await (await self._connection()).execute(_QUERY)).fetchall())

    def _loaded(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        self._devices = {r[0]: DeviceInfo(*r) for r in rows}
        self._unknown.clear()
        self._loaded_at = time.monotonic()

    async def _reload(self) -> None:
        """`load` behind the messages, on a connection of its own (the lookups' one would make
        a message's lookup wait for it); a failure keeps the cache for `RELOAD_RETRY_S`."""
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                self._loaded(await (await conn.execute(_QUERY)).fetchall())
        except (psycopg.Error, OSError) as exc:
            log.warning("device directory not reloaded; the cached one serves", error=str(exc))
            self._loaded_at = time.monotonic() - self._reload_every_s + RELOAD_RETRY_S

    async def lookup(self, device_id: str) -> DeviceInfo | None:
        now = time.monotonic()
        if now - self._loaded_at > self._reload_every_s:
            if self._loaded_at == float("-inf"):
                await self.load()
            elif self._reloading is None or self._reloading.done():
                self._reloading = asyncio.create_task(self._reload())
        found = self._devices.get(device_id)
        if found is not None:
            return found
        if now - self._unknown.get(device_id, float("-inf")) < self._negative_ttl_s:
            return None
        conn = await self._connection()
        row = await (await conn.execute(_QUERY + " AND d.id = %s", (device_id,))).fetchone()
        if row is None:
            if len(self._unknown) > 100_000:
                self._unknown.clear()
            self._unknown[device_id] = now
            return None
        self._devices[device_id] = DeviceInfo(*row)
        return self._devices[device_id]

    async def close(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
        if self._conn is not None:
            await self._conn.close()
