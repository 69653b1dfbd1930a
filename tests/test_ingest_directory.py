"""The device directory ingest asks for every message: its periodic reload of the registry
happens behind the messages, never in front of one."""

from __future__ import annotations

import asyncio

import psycopg

from devices.registry import save
from foundation.config import Settings
from ingest.directory import DeviceDirectory
from tests.conftest import make_community
from tests.helpers import eventually


async def test_a_reload_of_the_device_directory_never_holds_up_a_message(
    infra: Settings,
) -> None:
    c = make_community()
    save(infra.database_url, [c])
    kept, moved = c.elders[0].devices[0].id, c.elders[0].devices[1].id
    # Every lookup finds the cache due for a reload.
    directory = DeviceDirectory(infra.database_url, reload_every_s=0.0)
    await directory.load()
    try:
        async with await psycopg.AsyncConnection.connect(infra.database_url) as registry:
            # An operator deactivates a device, then a long migration locks the table: a
            # reload now waits for the lock.
            await registry.execute("UPDATE devices SET active = false WHERE id = %s", (moved,))
            await registry.commit()
            await registry.execute("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE")
            # Messages are still placed, from the cache, while the reload waits.
            for _ in range(3):
                found = await asyncio.wait_for(directory.lookup(kept), timeout=10)
                assert found is not None and found.elder_id == c.elders[0].id
            stale = await asyncio.wait_for(directory.lookup(moved), timeout=10)
            assert stale is not None  # the cache does not know yet
            await registry.commit()  # the lock goes: the reload completes
        # Once reloaded, the deactivated device is no longer anyone's.
        await eventually(lambda: _gone(directory, moved), 30, "the reload")
        assert await directory.lookup(kept) is not None
    finally:
        await directory.close()


async def _gone(directory: DeviceDirectory, device_id: str) -> bool:
    return await directory.lookup(device_id) is None
