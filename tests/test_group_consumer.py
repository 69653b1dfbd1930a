"""Group consumers' committed offsets know which broker incarnation they count in
(foundation/group_consumer.py), against the real embedded Kafka of the test session."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from eldercare.stack import roll
from foundation import group_consumer, kafka
from foundation.config import Settings
from foundation.group_consumer import GroupConsumer
from tests.helpers import new_topic


async def _topic_with(settings: Settings, records: int) -> TopicPartition:
    name = await new_topic(settings.kafka_bootstrap, 1, "test.group")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(records):
            await producer.send_and_wait(name, f"record {n}".encode(), partition=0)
    finally:
        await producer.stop()
    return TopicPartition(name, 0)


async def _commit_as_outsider(settings: Settings, group: str, tp: TopicPartition,
                              offset: int) -> None:
    """A commit as a consumer of the old log leaves it, late (tansu keeps no metadata)."""
    outsider = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await outsider.start()
    try:
        outsider.assign([tp])
        await outsider.commit({tp: OffsetAndMetadata(offset, "")})
    finally:
        await outsider.stop()


async def _first_offset(consumer: GroupConsumer, tp: TopicPartition) -> int:
    for _ in range(100):
        batches = await consumer.getmany(timeout_ms=200)
        if batches.get(tp):
            await consumer.commit()
            return int(batches[tp][0].offset)
    raise AssertionError("nothing read")


async def test_a_consumer_whose_broker_was_replaced_reads_the_new_log_from_its_start(
    infra: Settings,
) -> None:
    """The roll of the embedded Kafka under a running dispatcher: a commit of its position
    in the old log reached the new broker late, the dispatcher resumed from it, and the alerts
    below it were never read (an SOS lost in the soak bench). A consumer that saw another
    broker incarnation before reads from the start and commits that at once."""
    tp = await _topic_with(infra, 6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await _commit_as_outsider(infra, group, tp, 4)  # the old log's late commit
    consumer = kafka.consumer(infra, group, tp.topic)
    consumer.incarnation = "the-broker-before-the-roll"  # placed before it was replaced
    await consumer.start()  # the rejoin
    try:
        assert await _first_offset(consumer, tp) == 0
        assert consumer.incarnation == await kafka.incarnation(infra)
    finally:
        await consumer.stop()
    # What it committed counts in the new log (6 records read), not the late commit.
    assert (await group_consumer.committed(infra, group, [tp]))[tp].offset == 6


async def test_a_consumer_resumes_from_its_group_commit(infra: Settings) -> None:
    tp = await _topic_with(infra, 6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await _commit_as_outsider(infra, group, tp, 4)
    consumer = kafka.consumer(infra, group, tp.topic)
    await consumer.start()
    try:
        assert await _first_offset(consumer, tp) == 4
    finally:
        await consumer.stop()


async def test_the_roll_takes_a_commit_past_the_end_for_the_old_logs(infra: Settings) -> None:
    """The roll's test of "every consumer has read to the end": a late commit of the old log
    said so while the new log's alerts were unread, and the roll threw them away."""
    tp = await _topic_with(infra, 3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    incarnation = await kafka.incarnation(infra)
    await _commit_as_outsider(infra, group, tp, 9)
    done = await roll._kafka_committed(infra, group, tp.topic, incarnation, {tp: 3})
    assert roll.unread(done, tp.topic, {tp: 3}) == [0]
    await _commit_as_outsider(infra, group, tp, 3)
    done = await roll._kafka_committed(infra, group, tp.topic, incarnation, {tp: 3})
    assert roll.unread(done, tp.topic, {tp: 3}) == []
    assert roll.unread({0: 2}, tp.topic, {tp: 3}) == [0]
