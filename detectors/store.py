"""The per-elder state store: one `PartitionState` per assigned partition, in memory, loaded
from PostgreSQL when the partition is assigned and written back by the checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors.suite import ElderState, Suite
from eldercare import db


@dataclass
class PartitionState:
    """Everything the engine keeps for one partition; `next_offset` is the first unprocessed."""

    partition: int
    elders: dict[str, ElderState] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    next_offset: int | None = None
    saved_offset: int | None = None
    watermark: datetime | None = None
    max_event_time: datetime | None = None
    rearmed_at: datetime | None = None
    saved_at: datetime | None = None
    last_event_wall: float = 0.0
    # Each elder's newest event time and the wall clock (monotonic) it arrived at.
    recent: dict[str, tuple[datetime, float]] = field(default_factory=dict)

    def advance(self, t: datetime) -> None:
        """Move the watermark forward only (it never goes back)."""
        if self.watermark is None or t > self.watermark:
            self.watermark = t


async def load_partition(
    conn: db.Connection, suite: Suite, group: str, topic: str, partition: int,
) -> PartitionState:
    """The partition's checkpoint and elder states as the last checkpoint left them."""
    part = PartitionState(partition)
    row = await (await conn.execute(
        "SELECT next_offset, watermark, rearmed_at, saved_at FROM detector_checkpoints"
        " WHERE group_id = %s AND topic = %s AND partition = %s", (group, topic, partition),
    )).fetchone()
    if row is not None:
        part.next_offset = part.saved_offset = int(row["next_offset"])
        part.watermark, part.rearmed_at = row["watermark"], row["rearmed_at"]
        part.saved_at = row["saved_at"]
    cur = await conn.execute(
        "SELECT elder_id, state FROM detector_state WHERE group_id = %s AND partition = %s",
        (group, partition))
    for r in await cur.fetchall():
        raw: dict[str, Any] = r["state"]
        part.elders[r["elder_id"]] = suite.load(raw)
    return part
