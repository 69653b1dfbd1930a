"""Fail-over in about a second: the supervisor removes a dead process from its consumer groups.

A consumer group hands a dead member's partitions to the others only after the member's
session has expired (`ELDERCARE_KAFKA_SESSION_TIMEOUT_MS`, 3 s), and its replacement joins
through one more rebalance. The supervisor sees the death at once (it is the parent), so it
asks the group coordinator to remove the dead member, as the member itself would on a clean
stop (LeaveGroup). Members are found by their member id, which brokers (Apache Kafka and
tansu alike) begin with the consumer's client id, and every consumer of the platform names
itself with its process id (`foundation.kafka.consumer_client_id_prefix`).

The request version is negotiated per connection (ApiVersions): aiokafka knows LeaveGroup v0
and v1, and v1 is what tansu 0.6 and Apache Kafka 4.x (which still accepts v0-v5: KIP-896 left
LeaveGroup alone) are sent. A broker's refusal of one member (the member already gone, the
group rebalancing elsewhere) is logged and that member is not reported as evicted."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.group import LeaveGroupRequest

from foundation import kafka, logs
from foundation.config import Settings

log = logs.get(__name__)

# The platform's consumer groups (detectors.engine, dispatcher.service, devices.readings.writer;
# a test keeps them in step): a group that has never committed is missing from ListGroups.
PLATFORM_GROUPS = ("eldercare-detectors", "eldercare-detectors-urgent", "eldercare-dispatcher",
                   "eldercare-store")


def _members(description: Any) -> list[tuple[str, str]]:
    """(group, member id) of every member in a DescribeGroups response."""
    found = []
    for group in description.groups:  # error, group, state, protocol type, protocol, members
        for member in group[5]:  # member id first in every version
            found.append((str(group[1]), str(member[0])))
    return found


def _accepted(answer: Any, group: str, member: str) -> bool:
    """Whether the broker's LeaveGroup answer says `member` left `group`; a refusal is logged
    with the broker's reason and the version it was asked in."""
    if answer.error_code == 0:
        return True
    log.warning("broker refused to remove a dead member from its group", group=group,
                member=member, leave_group_version=answer.API_VERSION,
                error=errors.for_code(answer.error_code).__name__)
    return False


async def evict(settings: Settings, pid: int, groups: tuple[str, ...] = PLATFORM_GROUPS,
                timeout_s: float = 3.0) -> list[str]:
    """Remove the members of process `pid` from `groups` and every group the broker lists;
    returns their member ids."""
    prefix = kafka.consumer_client_id_prefix(pid)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=int(timeout_s * 1000),
                                **kafka.security(settings))
    await asyncio.wait_for(admin.start(), timeout_s)
    evicted = []
    try:
        listed = [str(g[0]) for g in await admin.list_consumer_groups()]
        for group in dict.fromkeys([*groups, *listed]):
            node = await admin.find_coordinator(group)
            for description in await admin.describe_consumer_groups([group], node):
                for name, member in _members(description):
                    if name == group and member.startswith(prefix):
                        answer = await admin._send_request_to_node(
                            node, LeaveGroupRequest(group, member))
                        if _accepted(answer, group, member):
                            evicted.append(member)
    finally:
        await admin.close()
    return evicted


def evict_now(settings: Settings, service: str, pid: int) -> None:
    """`evict` from the supervisor's loop; a failure only means the slower path (the dead
    member's session expires), so it is logged, not raised."""
    try:
        members = asyncio.run(asyncio.wait_for(evict(settings, pid), 5.0))
    except Exception:
        log.exception("dead service not removed from its consumer groups", service=service,
                      pid=pid)
        return
    if members:
        log.info("dead service removed from its consumer groups", service=service, pid=pid,
                 members=members)
