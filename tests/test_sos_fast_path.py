"""The waits an SOS no longer pays on its way to the first call (issue 20), each kept durable:
commits not waited for are on disk once a synchronous flush returns, a new incident starts
with its first call and leaves its other steps to the workers until that call is recorded,
and an urgent event's Kafka batch is sent without the producer's linger."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from devices.registry import save
from dispatcher.channels import DryRunChannel
from dispatcher.incidents import record_alert
from dispatcher.steps import StepRunner, new_worker_lock
from foundation import db, kafka
from foundation.config import Settings
from foundation.contracts.alerts import Alert, Severity
from foundation.contracts.events import CanonicalEvent
from ingest.event_batches import EventBatches
from tests.conftest import make_community


async def test_commits_not_waited_for_are_on_disk_once_flush_commits_returns(
    infra: Settings,
) -> None:
    async with await psycopg.AsyncConnection.connect(
        infra.database_url, row_factory=dict_row, autocommit=True,
    ) as conn:
        async with conn.transaction():
            await conn.execute(db.COMMIT_UNFLUSHED)
            await conn.execute("SELECT pg_logical_emit_message(true, 'test', 'unflushed')")
        row = await (await conn.execute("SELECT pg_current_wal_insert_lsn() AS lsn")).fetchone()
        assert row is not None
        await db.flush_commits(conn)
        row = await (await conn.execute(
            "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn AS flushed", (row["lsn"],),
        )).fetchone()
        assert row is not None and row["flushed"]


def _steps(settings: Settings, incident: object) -> list[tuple[str, str]]:
    with psycopg.connect(settings.database_url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT action, status FROM escalation_steps WHERE incident_id = %s"
            " AND due_at IS NOT NULL ORDER BY seq", (incident,))]


@pytest.fixture(scope="module")
def own_db(infra: Settings) -> Settings:
    """A database of the test's own: no dispatcher of the shared stack claims its steps."""
    name = f"fastpath_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(infra.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    own = infra.model_copy(update={"database_url": make_conninfo(infra.database_url,
                                                                 dbname=name)})
    db.upgrade(own.database_url)
    return own


async def test_a_new_incident_starts_with_its_first_call_and_leaves_the_rest_to_the_workers(
    own_db: Settings,
) -> None:
    infra = own_db
    elder, alert = _elder_and_sos(infra)
    pool = db.pool(infra.database_url, max_size=4)
    await pool.open()
    try:
        async with pool.connection() as conn, conn.transaction():
            incident = await record_alert(conn, alert)
        assert incident is not None
        # Due at once: the console entry, the duty staff's SMS and the call to contact 1.
        assert _steps(infra, incident) == [
            ("console", "pending"), ("sms", "pending"), ("call", "pending")]
        runner = StepRunner(pool, DryRunChannel(), "http://127.0.0.1:1", new_worker_lock())
        woken: list[int] = []  # the workers are told once the call is recorded
        runner.on_claim = lambda: woken.append(1)
        assert await runner.start_first(incident)
        await _only_the_call_made(infra, runner, incident, elder.contacts[0].phone, woken)
    finally:
        await pool.close()


async def test_a_new_incidents_first_call_is_claimed_in_the_incidents_own_transaction(
    own_db: Settings,
) -> None:
    """The dispatcher's intake claims a new incident's first call with its steps (one
    transaction: the call step is running from the incident's own instant), then starts it:
    the call is made once, the other steps stay for the workers."""
    infra = own_db
    elder, alert = _elder_and_sos(infra)
    pool = db.pool(infra.database_url, max_size=4)
    await pool.open()
    try:
        runner = StepRunner(pool, DryRunChannel(), "http://127.0.0.1:1", new_worker_lock())
        woken: list[int] = []
        runner.on_claim = lambda: woken.append(1)
        first = runner.first_step()
        assert first is not None  # request slots free
        async with pool.connection() as conn, conn.transaction():
            incident = await record_alert(conn, alert, first)
        assert incident is not None and first.step is not None
        with psycopg.connect(infra.database_url) as reader:
            claimed = reader.execute(
                "SELECT s.action, s.status, s.worker_lock, s.claimed_at = i.opened_at"
                " FROM escalation_steps s JOIN incidents i ON i.id = s.incident_id"
                " WHERE s.id = %s", (first.step["id"],)).fetchone()
        assert claimed == ("call", "running", runner.lock, True)
        assert ("console", "pending") in _steps(infra, incident)
        assert await runner.start_claimed(first)
        await _only_the_call_made(infra, runner, incident, elder.contacts[0].phone, woken)
    finally:
        await pool.close()


def _elder_and_sos(infra: Settings) -> tuple[Any, Alert]:
    """An elder of a new community in the registry, and an SOS alert of theirs."""
    community = make_community()
    save(infra.database_url, [community])
    elder = community.elders[0]
    now = datetime.now(UTC)
    return elder, Alert(alert_id=uuid.uuid4().hex, elder_id=elder.id,
                        community_id=community.id, kind="sos", severity=Severity.CRITICAL,
                        event_time=now, detected_at=now)


async def _only_the_call_made(infra: Settings, runner: StepRunner, incident: Any, phone: str,
                              woken: list[int]) -> None:
    """Once the started call is done: it was made once, to `phone`, the workers were told
    once, and the console entry and the staff SMS are still theirs to take."""
    await runner.drain(10)
    assert len(woken) == 1
    with psycopg.connect(infra.database_url) as conn:
        sent = conn.execute("SELECT channel, to_number, status FROM notifications"
                            " WHERE incident_id = %s", (incident,)).fetchall()
    assert sent == [("voice", phone, "dry_run")]
    steps = _steps(infra, incident)
    assert ("call", "done") in steps
    assert ("console", "pending") in steps and ("sms", "pending") in steps


class _Producer:
    """Hands out real aiokafka batches and keeps what it is given (no broker needed)."""

    def __init__(self) -> None:
        self._real = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
        self.sent: list[Any] = []

    def create_batch(self) -> Any:
        return self._real.create_batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, batch))
        return asyncio.get_running_loop().create_future()


class _Ingest:
    def __init__(self, producer: _Producer) -> None:
        self.producer = producer

    def release(self, key: str) -> None:
        pass


class _Message:
    qos, mid = 1, 1


def _event(kind: str, data: dict[str, Any]) -> CanonicalEvent:
    now = datetime.now(UTC)
    return CanonicalEvent(event_id=uuid.uuid4().hex, elder_id="E-1", community_id="C-1",
                          device_id="D-1", device_kind="sos_button", type=kind, event_time=now,
                          received_at=now, data=data)


async def test_an_urgent_events_batch_is_sent_without_the_producers_linger() -> None:
    producer = _Producer()
    batches = EventBatches(_Ingest(producer), None, set(), asyncio.Event())  # type: ignore[arg-type]
    await batches.start()
    for kind, data in [("sos", {}), ("hr", {"bpm": 72}), ("smoke", {"state": False}),
                       ("fall", {})]:
        await batches.add(_event(kind, data), _Message(), kind)  # type: ignore[arg-type]
        await batches.flush()
    # aiokafka lingers only on a batch still open: a closed one goes out at once. Events of
    # urgent types go to the priority lane too, each in a closed batch of its own.
    events = [b.closed() for t, b in producer.sent if t == kafka.EVENTS]
    assert events == [True, False, False, True]
    lane = [b.closed() for t, b in producer.sent if t == kafka.URGENT]
    assert lane == [True, True, True]  # sos, smoke (stopped sounding: the lane's episodes), fall
