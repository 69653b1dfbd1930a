"""A killed consumer's partitions change hands without waiting for its session to expire: the
supervisor removes the dead process from its consumer groups (`eldercare.stack.evict`).
Real tansu, a real consumer process killed with SIGKILL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from eldercare.stack import evict
from foundation import kafka
from foundation.config import Settings
from tests.helpers import eventually

# A member that stays assigned until it is killed; its session is long on purpose: without
# the eviction its partitions would wait that long for their next owner (and tansu then holds
# the next join for about half of it more; with the eviction only that half).
DEAD_SESSION_MS = 10_000
MEMBER = """
import asyncio, sys
from foundation import kafka
from foundation.config import Settings

async def main() -> None:
    settings = Settings(kafka_bootstrap=sys.argv[1], kafka_session_timeout_ms=int(sys.argv[4]),
                        kafka_heartbeat_interval_ms=500)
    consumer = kafka.consumer(settings, sys.argv[2], sys.argv[3])
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    print("assigned", flush=True)
    while True:
        await consumer.getmany(timeout_ms=100)

asyncio.run(main())
"""


def test_a_killed_consumers_partitions_change_hands_before_its_session_expires(
    infra: Settings,
) -> None:
    partitions_change_hands_before_the_session_expires(infra)


def partitions_change_hands_before_the_session_expires(infra: Settings) -> None:
    """Kill a consumer process holding every partition of a new topic, evict it as the
    supervisor does, and assert that exactly its member was removed and that a new consumer
    gets the partitions well before the dead member's session would have expired (also
    `tests/test_external_kafka.py`, against a Kafka of your own)."""
    topic, group = f"failover-{uuid.uuid4().hex[:8]}", f"failover-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 3, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    member = subprocess.Popen([sys.executable, "-c", MEMBER, infra.kafka_bootstrap, group, topic,
                               str(DEAD_SESSION_MS)], stdout=subprocess.PIPE)
    try:
        assert member.stdout is not None and member.stdout.readline() == b"assigned\n"
    finally:
        member.kill()
        member.wait()
    killed = time.monotonic()

    evicted = asyncio.run(evict.evict(infra, member.pid, (group,)))
    assert [m for m in evicted if m.startswith(kafka.consumer_client_id_prefix(member.pid))] \
        == evicted and len(evicted) == 1, evicted

    async def replacement() -> float:
        settings = infra.model_copy(update={"kafka_session_timeout_ms": 2000,
                                            "kafka_heartbeat_interval_ms": 400})
        consumer = kafka.consumer(settings, group, topic)
        await consumer.start()
        try:
            async def assigned() -> bool:
                await consumer.getmany(timeout_ms=100)
                return len(consumer.assignment()) == 3
            await eventually(assigned, 2 * DEAD_SESSION_MS / 1000, "the dead member's partitions")
            return time.monotonic() - killed
        finally:
            await consumer.stop()

    took = asyncio.run(replacement())
    assert took < DEAD_SESSION_MS / 1000, took


def test_the_supervisor_knows_every_platform_consumer_group() -> None:
    from detectors.engine import GROUP as DETECTORS
    from detectors.engine import URGENT_GROUP as DETECTORS_URGENT
    from devices.readings.writer import GROUP as STORE
    from dispatcher.service import GROUP as DISPATCHER
    from eldercare.stack import roll

    assert set(evict.PLATFORM_GROUPS) == {DETECTORS, DETECTORS_URGENT, STORE, DISPATCHER}
    assert set(roll.CHECKPOINTED) == {DETECTORS, DETECTORS_URGENT}
