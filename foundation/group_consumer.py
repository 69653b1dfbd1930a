"""Group consumers that never resume from a committed offset of a log the broker lost.

Offsets committed to Kafka count in one log. The embedded broker forgets its log when it
restarts or is rolled (a new incarnation, `kafka.incarnation`), but a consumer's commit can
outlive it: a commit of positions in the old log, in flight while the broker was replaced, is
retried against the new broker before the consumer has rejoined. The consumer then resumed from
there in the new log and skipped every record below it, and the roll took it for caught up. The
soak bench lost one SOS alert in a dozen runs this way: recorded by nobody, then rolled away.

So, on every assignment:
- a consumer that saw another incarnation at its previous assignment (the broker was replaced
  under it) reads its partitions from the start, whatever is committed, and commits those
  positions at once, over any late commit of the old log (the roll, which reads the commits,
  takes a commit past a partition's end for one of the old log, not for caught up);
- brokers that keep commit metadata (Apache Kafka; tansu 0.6 drops it) also get the incarnation
  with every commit, and a commit of another incarnation is not trusted.
A commit of records fetched before the latest assignment is not made at all (they are read
again: every consumer of the platform handles a record twice as once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from foundation import logs
from foundation.config import Settings
from foundation.wakeup import WakingConsumer

log = logs.get(__name__)


async def committed(settings: Settings, group: str, partitions: Iterable[TopicPartition]
                    ) -> dict[TopicPartition, OffsetAndMetadata]:
    """`group`'s committed offsets of `partitions` with their metadata (partitions without a
    commit are left out)."""
    from foundation import kafka

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=5000, **kafka.security(settings))
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
    finally:
        await admin.close()
    return {tp: meta for tp, meta in found.items() if meta.offset >= 0}


def counts_in(meta: OffsetAndMetadata, incarnation: str) -> bool:
    """Whether a committed offset counts in the broker incarnation `incarnation` (an offset
    committed without one, by an older version or while it was unknown, is trusted)."""
    return meta.metadata in ("", incarnation)


class GroupConsumer(WakingConsumer):
    """A WakingConsumer of `topics` in a group, committing offsets stamped with the broker
    incarnation (see the module docstring)."""

    def __init__(self, *topics: str, settings: Settings, **options: Any) -> None:
        super().__init__(**options)
        self._settings = settings
        self._group = str(options["group_id"])
        self.incarnation = ""  # of the current assignment; "" while unknown
        self._assignments = 0  # counts revocations and assignments
        self._fetched_in = 0  # `_assignments` when the last fetch returned
        # Clear while new partitions are being placed: no record is handed out from where
        # aiokafka put them meanwhile (the committed offset this placement may distrust).
        self.placed = asyncio.Event()
        self.placed.set()
        if topics:
            self.subscribe(list(topics), listener=_Placement(self))

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> Any:
        await self.placed.wait()
        batches = await super().getmany(*partitions, timeout_ms=timeout_ms,
                                        max_records=max_records)
        self._fetched_in = self._assignments
        return batches

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit `offsets` (default: the positions of every assigned partition), stamped with
        the incarnation; not at all when the partitions were reassigned since the last fetch
        (its records are read again)."""
        if self._assignments != self._fetched_in:
            log.info("partitions reassigned since the fetch: offsets not committed, the "
                     "records are read again", group=self._group)
            return
        incarnation = self.incarnation
        if offsets is None:
            offsets = {tp: await self.position(tp) for tp in self.assignment()}
        await super().commit({tp: OffsetAndMetadata(offset, incarnation)
                              for tp, offset in offsets.items()})

    async def place(self, partitions: Iterable[TopicPartition]) -> None:
        """Position `partitions` at their committed offsets where these can be trusted (see
        the module docstring), else at their start (also after a database outage: alerts
        fetched but not recorded are read again)."""
        partitions = list(partitions)
        from foundation import kafka

        before = self.incarnation
        try:
            self.incarnation = await kafka.incarnation(self._settings)
            found = await committed(self._settings, self._group, partitions)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("broker incarnation or committed offsets unknown: offsets as "
                        "committed", group=self._group, error=str(exc))
            self.incarnation = ""
            return
        replaced = bool(before) and before != self.incarnation
        restarted = []
        for tp in partitions:
            meta = found.get(tp)
            if meta is None and not replaced:
                continue  # nothing committed: aiokafka starts at the beginning (earliest)
            if meta is not None and not replaced and counts_in(meta, self.incarnation):
                self.seek(tp, meta.offset)
                continue
            if meta is not None:
                log.warning("committed offset not trusted: read from the start",
                            group=self._group, topic=tp.topic, partition=tp.partition,
                            offset=meta.offset, broker_replaced=replaced,
                            stored_incarnation=meta.metadata, incarnation=self.incarnation)
            await self.seek_to_beginning(tp)
            restarted.append(tp)
        if restarted:  # over any late commit of the old log (the roll reads the commits)
            positions = {tp: await self.position(tp) for tp in restarted}
            await super().commit({tp: OffsetAndMetadata(offset, self.incarnation)
                                  for tp, offset in positions.items()})


class _Placement(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: GroupConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.consumer._assignments += 1

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.consumer._assignments += 1
        self.consumer.placed.clear()
        try:
            await self.consumer.place(assigned)
        finally:
            self.consumer.placed.set()
