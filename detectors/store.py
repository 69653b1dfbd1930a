"""The per-elder state store: one `PartitionState` per assigned partition, in memory, loaded
from PostgreSQL when the partition is assigned and written back by the checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors.suite import ElderState, Suite
from foundation import db, logs

log = logs.get(__name__)


def offset_still_valid(offset: int, stored: str, current: str, log_end: int | None) -> bool:
    """Whether a checkpointed offset still points into the broker's log."""
    if stored and current:  # the same log, or a new one; tansu 0.6 understates a log's end
        return stored == current  # (by its last batch), so the end is no test within one log
    return log_end is None or offset <= log_end


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
    rearm_since: datetime | None = None  # when the outage behind `rearmed_at` began
    saved_at: datetime | None = None
    incarnation: str = ""  # the broker incarnation `next_offset` counts in
    last_event_wall: float = 0.0
    # The start of the log, where the assignment sent the consumer when it had no offset to
    # resume from (`next_offset` None): a batch starting past it was fetched before that seek.
    seeked_to: int | None = None
    gap: tuple[int, int] | None = None  # (expected, found): a gap in the log seen once
    # Each elder's newest event time and the wall clock (monotonic) it arrived at.
    recent: dict[str, tuple[datetime, float]] = field(default_factory=dict)

    def rearm(self, since: datetime, until: datetime) -> None:
        """The platform missed this partition's events from `since` (it was down): silence
        judged at event times from then on counts from `until` at the earliest."""
        self.rearm_since, self.rearmed_at = since, until

    def rearm_for(self, t: datetime) -> datetime | None:
        """The re-arm that applies to a judgment at event time `t`: none before the outage
        began (a replay, or a watch's buffered upload, of days the platform did not miss)."""
        if self.rearmed_at is None or (self.rearm_since is not None and t < self.rearm_since):
            return None
        return self.rearmed_at

    def advance(self, t: datetime) -> None:
        """Move the watermark forward only (it never goes back)."""
        if self.watermark is None or t > self.watermark:
            self.watermark = t


async def load_partition(
    conn: db.Connection, suite: Suite, group: str, topic: str, partition: int,
    incarnation: str = "", log_end: int | None = None,
) -> PartitionState:
    """The partition's checkpoint and elder states as the last checkpoint left them.

    Offsets are kept only if they count in the broker's current `incarnation` (a checkpoint
    from before incarnations were recorded is trusted unless it lies past `log_end`, the
    partition's end offset). Otherwise the broker has lost the log they counted in: the
    partition is read from its start, and the elders' state (open episodes, learned routines)
    is kept, since it is about the elders, not the log."""
    part = PartitionState(partition, incarnation=incarnation)
    row = await (await conn.execute(
        "SELECT next_offset, watermark, rearmed_at, rearm_since, saved_at, incarnation"
        " FROM detector_checkpoints WHERE group_id = %s AND topic = %s AND partition = %s",
        (group, topic, partition),
    )).fetchone()
    if row is not None:
        part.watermark, part.rearmed_at = row["watermark"], row["rearmed_at"]
        part.rearm_since = row["rearm_since"]
        part.saved_at = row["saved_at"]
        offset, stored = int(row["next_offset"]), str(row["incarnation"])
        if offset_still_valid(offset, stored, incarnation, log_end):
            part.next_offset = part.saved_offset = offset
        else:
            log.warning("checkpoint is from an earlier broker incarnation: offsets reset, "
                        "elder state kept", partition=partition, offset=offset,
                        stored_incarnation=stored, incarnation=incarnation, log_end=log_end)
    cur = await conn.execute(
        "SELECT elder_id, state FROM detector_state WHERE group_id = %s AND partition = %s",
        (group, partition))
    for r in await cur.fetchall():
        raw: dict[str, Any] = r["state"]
        part.elders[r["elder_id"]] = suite.load(raw)
    return part
