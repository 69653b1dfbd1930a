"""The checkpoint: makes the stored state and the stored offsets agree.

A checkpoint takes a snapshot of the partitions - the changed elders' states as JSON, each
partition's next offset, watermark and re-arm time, and the alerts produced so far - and then:
1. waits until Kafka has acknowledged every alert produced before the snapshot;
2. in ONE PostgreSQL transaction, writes the snapshot's state rows and offsets;
3. marks what the snapshot held as saved.
A crash before step 2 replays the events since the previous checkpoint: the alerts they produce
again carry the same deterministic ids, and the dispatcher's `incident_alerts` key drops them.

`begin()` runs steps 1-3 in the background while the engine goes on with newer events (states
are immutable, so the snapshot is only their JSON and the offsets: a consistent cut); one
checkpoint is in flight at a time. `commit()` waits for it and checkpoints now (rebalance,
shutdown)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detectors.store import PartitionState
from detectors.suite import Suite
from foundation import db, logs

log = logs.get(__name__)

# The changed states go through a COPY into a staging table and one upsert: about half the
# database time of one INSERT per elder when thousands of elders changed since the last one.
_STAGE_STATE = ("CREATE TEMP TABLE IF NOT EXISTS detector_state_stage (elder_id text,"
                " partition int, state jsonb) ON COMMIT DELETE ROWS")
_COPY_STATE = "COPY detector_state_stage (elder_id, partition, state) FROM STDIN"
_UPSERT_STATE = (
    "INSERT INTO detector_state (group_id, elder_id, partition, state)"
    " SELECT %s, elder_id, partition, state FROM detector_state_stage"
    " ON CONFLICT (group_id, elder_id) DO UPDATE"
    " SET partition = EXCLUDED.partition, state = EXCLUDED.state, updated_at = now()")
_UPSERT_OFFSET = (
    "INSERT INTO detector_checkpoints (group_id, topic, partition,"
    " next_offset, watermark, rearmed_at, rearm_since, incarnation)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (group_id, topic, partition) DO UPDATE SET"
    " next_offset = EXCLUDED.next_offset, watermark = EXCLUDED.watermark,"
    " rearmed_at = EXCLUDED.rearmed_at, rearm_since = EXCLUDED.rearm_since,"
    " incarnation = EXCLUDED.incarnation,"
    " saved_at = now()")


@dataclass
class _Cut:
    """One partition as the snapshot saw it."""

    part: PartitionState
    elders: set[str]  # the elders whose rows the snapshot holds
    rows: list[tuple[str, int, str]]  # elder, partition, state as JSON
    next_offset: int | None
    watermark: datetime | None
    rearmed_at: datetime | None
    rearm_since: datetime | None
    incarnation: str


class Checkpoint:
    def __init__(self, pool: db.Pool, suite: Suite, group: str, topic: str) -> None:
        self.pool = pool
        self.suite = suite
        self.group = group
        self.topic = topic
        self.sends: list[asyncio.Future[Any]] = []
        self._writing: asyncio.Task[None] | None = None

    def track(self, send: asyncio.Future[Any]) -> None:
        """An alert in flight; the next checkpoint waits for its acknowledgement."""
        self.sends.append(send)

    def begin(self, parts: list[PartitionState]) -> bool:
        """Start a checkpoint of these partitions in the background, unless one is still in
        flight (the next call takes what this one would have; False); raises if the previous
        one failed (the engine stops: everything since the last good checkpoint is replayed)."""
        if self._writing is not None:
            if not self._writing.done():
                return False
            writing, self._writing = self._writing, None
            writing.result()
        cuts, sends = self._snapshot(parts)
        if cuts:
            self._writing = asyncio.create_task(self._write(cuts, sends))
        return True

    async def commit(self, parts: list[PartitionState]) -> None:
        """Wait for the checkpoint in flight, then checkpoint these partitions now."""
        await self.settle()
        cuts, sends = self._snapshot(parts)
        if cuts:
            await self._write(cuts, sends)

    async def settle(self) -> None:
        """Wait for the checkpoint in flight (raises if it failed)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    def abandon(self) -> None:
        """Stop the checkpoint in flight (the engine is failing: it will replay)."""
        if self._writing is not None:
            self._writing.cancel()
            self._writing = None

    def _snapshot(self, parts: list[PartitionState]
                  ) -> tuple[list[_Cut], list[asyncio.Future[Any]]]:
        todo = [p for p in parts if p.dirty or p.next_offset != p.saved_offset]
        if not todo:
            return [], []
        sends, self.sends = self.sends, []
        cuts = []
        for p in todo:
            if p.next_offset is not None and p.saved_offset is not None \
                    and p.next_offset < p.saved_offset:
                raise RuntimeError(f"offset of partition {p.partition} went backwards: "
                                   f"{p.next_offset} < {p.saved_offset}")
            elders, p.dirty = p.dirty, set()
            rows = [(e, p.partition, self.suite.dump_json(p.elders[e]))
                    for e in elders if e in p.elders]
            cuts.append(_Cut(p, elders, rows, p.next_offset, p.watermark, p.rearmed_at,
                             p.rearm_since, p.incarnation))
        return cuts, sends

    async def _write(self, cuts: list[_Cut], sends: list[asyncio.Future[Any]]) -> None:
        """Steps 1-3 of the module docstring for one snapshot."""
        try:
            if sends:
                await asyncio.gather(*sends)                                   # 1
            async with self.pool.connection() as conn, conn.transaction():     # 2
                # One row per elder (an upsert may not touch a row twice): an elder found in
                # two partitions (their count changed) keeps the state read last.
                rows = {r[0]: r for c in cuts for r in c.rows}
                if rows:
                    await conn.execute(_STAGE_STATE)
                    async with conn.cursor().copy(_COPY_STATE) as copy:
                        for row in rows.values():
                            await copy.write_row(row)
                    await conn.execute(_UPSERT_STATE, (self.group,))
                for c in cuts:
                    if c.next_offset is not None:
                        await conn.execute(_UPSERT_OFFSET, (
                            self.group, self.topic, c.part.partition, c.next_offset,
                            c.watermark, c.rearmed_at, c.rearm_since, c.incarnation))
        except BaseException:
            for c in cuts:  # not saved: the next checkpoint writes these elders again
                c.part.dirty |= c.elders
            raise
        for c in cuts:                                                         # 3
            c.part.saved_offset = c.next_offset
