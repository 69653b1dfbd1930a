"""Apache Kafka 4.0 removed many old protocol versions (KIP-896). Every request the platform's
Kafka clients send (aiokafka's consumer, producer and admin client, and the supervisor's
LeaveGroup in `eldercare.stack.evict`) must still have a version that a 4.0 broker accepts:
aiokafka negotiates the highest version both sides know (ApiVersions), and raises if there is
none. Pure logic; the same check against a running broker is `tests/test_external_kafka.py`."""

from __future__ import annotations

from aiokafka.protocol.admin import (
    ApiVersionRequest,
    CreateTopicsRequest,
    DeleteRecordsRequest,
    DescribeGroupsRequest,
    ListGroupsRequest,
)
from aiokafka.protocol.api import Request
from aiokafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.group import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    LeaveGroupResponse_v0,
    LeaveGroupResponse_v1,
    SyncGroupRequest,
)
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.offset import OffsetRequest
from aiokafka.protocol.produce import ProduceRequest

from eldercare.stack import evict

# (api key) -> (min, max) version a Kafka 4.0.0 broker advertises, from its message definitions
# (clients/src/main/resources/common/message/*.json at tag 4.0.0). Where KIP-896's removals
# were later softened (JoinGroup v0-v1 back in 4.0.1; Metadata v0-v3 kept for old clients),
# the stricter minimum is used.
KAFKA_4_0: dict[int, tuple[int, int]] = {
    0: (3, 12),  # Produce
    1: (4, 17),  # Fetch
    2: (1, 10),  # ListOffsets
    3: (4, 13),  # Metadata
    8: (2, 9),  # OffsetCommit
    9: (1, 9),  # OffsetFetch
    10: (1, 6),  # FindCoordinator
    11: (2, 9),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 5),  # LeaveGroup: untouched by KIP-896
    14: (0, 5),  # SyncGroup
    15: (0, 6),  # DescribeGroups
    16: (0, 5),  # ListGroups
    18: (0, 4),  # ApiVersions
    19: (2, 7),  # CreateTopics
    21: (0, 2),  # DeleteRecords
}

PLATFORM_REQUESTS: list[type[Request]] = [  # type: ignore[type-arg]
    ProduceRequest, FetchRequest, OffsetRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, FindCoordinatorRequest, JoinGroupRequest, HeartbeatRequest,
    LeaveGroupRequest, SyncGroupRequest, DescribeGroupsRequest, ListGroupsRequest,
    CreateTopicsRequest, DeleteRecordsRequest, ApiVersionRequest,
]


def _negotiated(request: type[Request], broker: dict[int, tuple[int, int]]  # type: ignore[type-arg]
                ) -> int | None:
    """The version aiokafka's `Request.prepare` picks: the highest it knows within the
    broker's range (None: no common version, the request would fail)."""
    low, high = broker[request.API_KEY]
    known = [c.API_VERSION for c in request._CLASSES if low <= c.API_VERSION <= high]
    return max(known, default=None)


def test_every_request_the_platform_sends_has_a_version_kafka_4_0_accepts() -> None:
    missing = [r.__name__ for r in PLATFORM_REQUESTS if _negotiated(r, KAFKA_4_0) is None]
    assert missing == []


def test_the_supervisors_leave_group_is_sent_as_v1_to_kafka_4_0() -> None:
    struct = LeaveGroupRequest("eldercare-dispatcher", "eldercare-pid42-x").prepare(KAFKA_4_0)
    assert (struct.API_KEY, struct.API_VERSION) == (13, 1)


def test_a_broker_refusing_the_eviction_is_not_reported_as_evicted() -> None:
    """UNKNOWN_MEMBER_ID (25): the member had already gone (its session expired meanwhile)."""
    assert evict._accepted(LeaveGroupResponse_v1(0, 0), "g", "m")
    assert evict._accepted(LeaveGroupResponse_v0(0), "g", "m")
    assert not evict._accepted(LeaveGroupResponse_v1(0, 25), "g", "m")
