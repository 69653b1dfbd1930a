"""The checkpoint: makes the stored state and the stored offsets agree.

`commit()` does, in order:
1. wait until Kafka has acknowledged every alert produced since the last checkpoint;
2. in ONE PostgreSQL transaction, write the changed elders' state rows and each partition's
   next offset, watermark and re-arm time;
3. mark the partitions clean.
A crash before step 2 replays the events since the previous checkpoint: the alerts they produce
again carry the same deterministic ids, and the dispatcher's `incident_alerts` key drops them."""

from __future__ import annotations

import asyncio
from typing import Any

from detectors.store import PartitionState
from detectors.suite import Suite
from foundation import db, logs

log = logs.get(__name__)


class Checkpoint:
    def __init__(self, pool: db.Pool, suite: Suite, group: str, topic: str) -> None:
        self.pool = pool
        self.suite = suite
        self.group = group
        self.topic = topic
        self.sends: list[asyncio.Future[Any]] = []

    def track(self, send: asyncio.Future[Any]) -> None:
        """An alert in flight; the next commit waits for its acknowledgement."""
        self.sends.append(send)

    async def commit(self, parts: list[PartitionState]) -> None:
        """Steps 1-3 of the module docstring, for these partitions."""
        sends, self.sends = self.sends, []
        if sends:
            await asyncio.gather(*sends)                                   # 1
        todo = [p for p in parts if p.dirty or p.next_offset != p.saved_offset]
        if not todo:
            return
        async with self.pool.connection() as conn, conn.transaction():     # 2
            for p in todo:
                if p.next_offset is not None and p.saved_offset is not None \
                        and p.next_offset < p.saved_offset:
                    raise RuntimeError(f"offset of partition {p.partition} went backwards: "
                                       f"{p.next_offset} < {p.saved_offset}")
                rows = [(self.group, e, p.partition, self.suite.dump_json(p.elders[e]))
                        for e in p.dirty if e in p.elders]
                if rows:
                    async with conn.cursor() as cur:
                        await cur.executemany(
                            "INSERT INTO detector_state (group_id, elder_id, partition, state)"
                            " VALUES (%s, %s, %s, %s) ON CONFLICT (group_id, elder_id) DO UPDATE"
                            " SET partition = EXCLUDED.partition, state = EXCLUDED.state,"
                            " updated_at = now()", rows)
                if p.next_offset is not None:
                    await conn.execute(
                        "INSERT INTO detector_checkpoints (group_id, topic, partition,"
                        " next_offset, watermark, rearmed_at, incarnation)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (group_id, topic, partition) DO UPDATE SET"
                        " next_offset = EXCLUDED.next_offset, watermark = EXCLUDED.watermark,"
                        " rearmed_at = EXCLUDED.rearmed_at, incarnation = EXCLUDED.incarnation,"
                        " saved_at = now()",
                        (self.group, self.topic, p.partition, p.next_offset, p.watermark,
                         p.rearmed_at, p.incarnation))
        for p in todo:                                                     # 3
            p.dirty.clear()
            p.saved_offset = p.next_offset
