"""Chaos cases of `eldercare bench chaos` against real processes: the stack `eldercare up` runs
(embedded PostgreSQL, tansu, mosquitto; ingest, detectors, dispatcher and store under the
supervisor), an SOS flood, and SIGKILL of one part (or a whole-stack restart) in the middle.
Bounds here are generous (the machine is shared); the timing goals are the bench's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.registry import Community
from eldercare.bench import chaos
from tests.twilio_mock import TwilioMock

PER_CASE = 15
CASES = ("detectors", "dispatcher", "postgres", "restart", "restart-then-press",
         "mosquitto-then-press")
GENEROUS_S = 45.0  # a press with no call after this long would be a failure, not slowness
# Press -> call started (the platform's own time) when the whole stack restarts under the
# flood: 11-15 s before the restart was made fast (issue 14), 4.6-7.4 s since, at load 6-9
# (`eldercare bench chaos --cases none,restart`, docs/reliability-stack.md).
RESTART_BOUND_S = 10.0
OPERATOR = "+8613600009999"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, twilio: TwilioMock
          ) -> Iterator[chaos.ChaosStack]:
    data: Path = tmp_path_factory.mktemp("chaos")
    with chaos.chaos_stack(data, twilio.url, operator_phone=OPERATOR) as running:
        yield running


@pytest.fixture(scope="module")
def people(stack: chaos.ChaosStack, twilio: TwilioMock) -> tuple[Community, dict[str, str]]:
    return chaos.warmed_population(stack, twilio.requests,
                                   PER_CASE * len(CASES) + 2)  # + 2 probes


def _case(case: str, stack: chaos.ChaosStack, twilio: TwilioMock,
          people: tuple[Community, dict[str, str]]) -> chaos.CaseResult:
    community, phones = people
    n = CASES.index(case)
    elders = community.elders[n * PER_CASE:(n + 1) * PER_CASE]
    row = chaos.run_case(case, stack, twilio.requests, community, phones, elders)
    assert row.presses == PER_CASE
    assert row.lost == 0, row
    assert row.duplicated == 0, row
    assert row.incidents == PER_CASE and row.first_calls == PER_CASE, row
    assert row.max_s is not None and row.max_s < GENEROUS_S, row
    return row


def test_killed_detectors_lose_and_duplicate_no_call(
    stack: chaos.ChaosStack, twilio: TwilioMock, people: tuple[Community, dict[str, str]],
) -> None:
    _case("detectors", stack, twilio, people)


def test_killed_dispatcher_loses_and_duplicates_no_call(
    stack: chaos.ChaosStack, twilio: TwilioMock, people: tuple[Community, dict[str, str]],
) -> None:
    _case("dispatcher", stack, twilio, people)


def test_killed_postgres_is_restarted_the_operator_told_and_every_sos_called_once(
    stack: chaos.ChaosStack, twilio: TwilioMock, people: tuple[Community, dict[str, str]],
) -> None:
    _case("postgres", stack, twilio, people)
    alarms = [m.form["Body"][0] for m in twilio.messages(OPERATOR)]
    assert any("数据库无法连接" in body for body in alarms), alarms
    # "back" is sent by the replacement process when it still found the database down.


def test_whole_stack_restart_keeps_detecting_without_a_crash_loop(
    stack: chaos.ChaosStack, twilio: TwilioMock, people: tuple[Community, dict[str, str]],
) -> None:
    """Ctrl-C and `eldercare up` again on the same data directory: the embedded Kafka starts
    empty while the detectors' checkpoints in PostgreSQL remain (issue 14: "offset ... went
    backwards", a crash loop). Every press made meanwhile is called once, within seconds."""
    row = _case("restart", stack, twilio, people)
    assert row.pipeline_max_s is not None and row.pipeline_max_s < RESTART_BOUND_S, row
    assert stack.supervisor is not None
    assert stack.supervisor.children["detectors"].restarts == 0
    # Pressed after the restart, with the detectors' first checkpoints of the new broker made.
    community, phones = people
    elder = community.elders[-2]
    asyncio.run(chaos.warm_up(stack, twilio.requests, community, phones, elder, GENEROUS_S))
    assert stack.supervisor.children["detectors"].restarts == 0


def test_presses_made_as_the_restarted_stack_starts_are_called(
    stack: chaos.ChaosStack, twilio: TwilioMock, people: tuple[Community, dict[str, str]],
) -> None:
    """Pressed at once after Ctrl-C and `eldercare up`: mosquitto is up and acknowledges them,
    ingest is still starting. mosquitto routed nothing to ingest's session restored from its
    database (issue 14: 22 of 50 presses of a restart were lost this way)."""
    community, phones = people
    n = CASES.index("restart-then-press")
    elders = community.elders[n * PER_CASE:(n + 1) * PER_CASE]
    row = chaos.press_after("restart-then-press", stack, twilio.requests, community, phones,
                            elders, stack.restart)
    assert (row.lost, row.duplicated, row.first_calls) == (0, 0, PER_CASE), row


def test_presses_made_as_a_killed_mosquitto_comes_back_are_called(
    stack: chaos.ChaosStack, twilio: TwilioMock, people: tuple[Community, dict[str, str]],
) -> None:
    """Pressed at once after the supervisor restarted a killed mosquitto, before ingest
    reconnects (it waits a second): acknowledged by the broker, so they must be called."""
    community, phones = people
    n = CASES.index("mosquitto-then-press")
    elders = community.elders[n * PER_CASE:(n + 1) * PER_CASE]
    row = chaos.press_after("mosquitto-then-press", stack, twilio.requests, community, phones,
                            elders, lambda: stack.kill_and_wait_back("mosquitto"))
    assert (row.lost, row.duplicated, row.first_calls) == (0, 0, PER_CASE), row
