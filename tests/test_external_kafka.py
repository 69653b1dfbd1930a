"""The fail-over against a Kafka the platform did not start (Apache Kafka 4.0 from
`deploy/local-kafka/run.sh`, or any other): skipped unless ELDERCARE_TEST_KAFKA_BOOTSTRAP names
it, so the default suite needs no Java. Run it as docs/testing.md ("Against your own Kafka")
shows; use a fresh broker per run (the platform's consumer groups and topics are reused).

- the supervisor's LeaveGroup is accepted by that broker and a killed consumer's partitions
  change hands before its session expires (`eldercare.stack.evict`);
- the stack `eldercare up` runs, pointed at that broker, calls every press of an SOS flood
  exactly once while the dispatcher and then the detectors are killed with SIGKILL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.registry import Community
from eldercare.bench import chaos
from foundation.config import Settings
from tests.test_failover import partitions_change_hands_before_the_session_expires
from tests.twilio_mock import TwilioMock

KAFKA = os.environ.get("ELDERCARE_TEST_KAFKA_BOOTSTRAP", "")
pytestmark = pytest.mark.skipif(
    not KAFKA, reason="no ELDERCARE_TEST_KAFKA_BOOTSTRAP (e.g. from deploy/local-kafka/run.sh)")

PER_CASE = 15
CASES = ("dispatcher", "detectors")
GENEROUS_S = 45.0  # as tests/test_chaos.py: a failure, not slowness, past this


def test_a_killed_consumer_is_evicted_by_that_broker() -> None:
    partitions_change_hands_before_the_session_expires(Settings(kafka_bootstrap=KAFKA))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, twilio: TwilioMock
          ) -> Iterator[chaos.ChaosStack]:
    data: Path = tmp_path_factory.mktemp("external-kafka")
    with chaos.chaos_stack(data, twilio.url, kafka_bootstrap=KAFKA) as running:
        assert not [s for s in running.stack.embedded if s.name == "kafka"]
        yield running


@pytest.fixture(scope="module")
def people(stack: chaos.ChaosStack, twilio: TwilioMock) -> tuple[Community, dict[str, str]]:
    return chaos.warmed_population(stack, twilio.requests,
                                   PER_CASE * len(CASES) + 1)  # + 1 probe


@pytest.mark.parametrize("case", CASES)
def test_every_press_is_called_once_while_a_consumer_is_killed(
    case: str, stack: chaos.ChaosStack, twilio: TwilioMock,
    people: tuple[Community, dict[str, str]], capfd: pytest.CaptureFixture[str],
) -> None:
    community, phones = people
    n = CASES.index(case)
    elders = community.elders[n * PER_CASE:(n + 1) * PER_CASE]
    row = chaos.run_case(case, stack, twilio.requests, community, phones, elders)
    assert (row.presses, row.incidents, row.first_calls) == (PER_CASE,) * 3, row
    assert (row.lost, row.duplicated) == (0, 0), row
    assert row.max_s is not None and row.max_s < GENEROUS_S, row
    assert stack.supervisor is not None and stack.supervisor.children[case].restarts == 1
    # The supervisor's log: the broker accepted the LeaveGroup of the killed process's member.
    out, err = capfd.readouterr()
    evicted = [line for line in (out + err).splitlines()
               if "dead service removed from its consumer groups" in line and case in line]
    assert len(evicted) == 1, evicted
