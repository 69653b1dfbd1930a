"""The escalation ladder against real PostgreSQL, a real Kafka-protocol broker, the Prism mock of
Twilio and real dispatcher processes (`eldercare service dispatcher`), with webhooks signed as
Twilio signs them and sent to the webhook app (the router the console mounts at /twilio).

The module has its own database (on the session's PostgreSQL) and its own tansu broker, so the
shared `platform` dispatcher, if another test started it, cannot take these steps."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from twilio.request_validator import RequestValidator

from devices.registry import Community, save
from eldercare.stack import embedded
from foundation import db, kafka, procs
from foundation.config import Settings, child_env
from foundation.contracts.alerts import Alert, Severity
from tests.conftest import make_community
from tests.helpers import eventually, read_topic
from tests.twilio_mock import TwilioMock


@pytest.fixture(scope="module")
def stack(settings: Settings, workdir: Path) -> Iterator[Settings]:
    """Own database, own broker, the webhooks service; Twilio is the shared mock."""
    name = f"dispatch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    here = workdir / name
    here.mkdir()
    broker = embedded.start_kafka(here)
    port = procs.free_port()
    own = settings.model_copy(update={
        "database_url": make_conninfo(settings.database_url, dbname=name),
        "kafka_bootstrap": broker.url, "webhooks_bind": f"127.0.0.1:{port}",
        "public_base_url": f"http://127.0.0.1:{port}", "data_dir": here,
        "dispatcher_retry_backoff_s": 0.2, "dispatcher_retry_attempts": 2,
        "metrics_binds": "",  # the observability endpoint delays SIGTERM by ~12 s
        "dispatcher_reconcile_retry_s": 1.0,
    })
    db.upgrade(own.database_url)
    asyncio.run(kafka.ensure_topics(own))
    # `eldercare service webhooks` (the console serves the same router): Twilio's side.
    hooks = _spawn(own, "webhooks", here / "webhooks.log")
    procs.wait_for_port(port, hooks, timeout=30)
    yield own
    procs.stop(hooks)
    broker.stop()


def _env(settings: Settings) -> dict[str, str]:
    return child_env(settings)


def _spawn(settings: Settings, service: str, log: Path, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    return procs.spawn([sys.executable, "-m", "eldercare.cli", "service", service], log,
                       env={**_env(settings), **(env or {})})


@dataclasses.dataclass
class Fleet:
    """The module's dispatcher processes. One runs from the start: each new process costs a
    consumer-group rebalance (seconds), so tests share it unless they need their own."""

    settings: Settings
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = _spawn(self.settings, "dispatcher", self.settings.data_dir / "dispatcher.log",
                      env)
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]


@pytest.fixture(scope="module")
def fleet(stack: Settings) -> Iterator[Fleet]:
    f = Fleet(stack)
    f.start()
    yield f
    for proc in f.procs:
        procs.stop(proc)


def _community(stack: Settings, elders: int = 1, landline_3: bool = False) -> Community:
    c = make_community(elders=elders)
    tag = uuid.uuid4().int % 10**8
    people = []
    for e in c.elders:
        contacts = list(e.contacts)
        if landline_3:  # a landline: called, never texted (even though can_sms says yes)
            contacts[2] = dataclasses.replace(contacts[2], phone=f"+8610{tag:08d}")
        people.append(dataclasses.replace(e, contacts=contacts))
    c = dataclasses.replace(c, elders=people, emergency_line=f"+8621{tag:08d}")
    save(stack.database_url, [c])
    return c


def _policy(stack: Settings, elder_id: str, rungs: list[tuple[str, str, float]],
            rounds: int = 1, round_wait_s: float = 0.2, severity: str = "critical") -> None:
    policy = {"rungs": [{"action": a, "target": t, "wait_s": w} for a, t, w in rungs],
              "rounds": rounds, "round_wait_s": round_wait_s}
    with psycopg.connect(stack.database_url) as conn:
        conn.execute(
            "INSERT INTO escalation_policies (elder_id, severity, policy) VALUES (%s, %s, %s)"
            " ON CONFLICT (elder_id, severity) DO UPDATE SET policy = EXCLUDED.policy",
            (elder_id, severity, json.dumps(policy)),
        )


async def _alert(stack: Settings, community: Community, n: int = 0, alert_id: str | None = None,
                 kind: str = "sos", severity: Severity = Severity.CRITICAL) -> Alert:
    elder = community.elders[n]
    now = datetime.now(UTC)
    alert = Alert(alert_id=alert_id or uuid.uuid4().hex, elder_id=elder.id,
                  community_id=community.id, kind=kind, severity=severity, event_time=now,
                  detected_at=now, device_id=f"{elder.id}-sos_button", room="卧室")
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(kafka.ALERTS, alert.model_dump_json().encode(), alert.key())
    finally:
        await producer.stop()
    return alert


def _rows(stack: Settings, sql: str, *args: Any) -> list[dict[str, Any]]:
    with psycopg.connect(stack.database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, args).fetchall()


def _incident(stack: Settings, elder_id: str) -> dict[str, Any] | None:
    rows = _rows(stack, "SELECT * FROM incidents WHERE elder_id = %s", elder_id)
    return rows[0] if rows else None


def _timeline(stack: Settings, incident_id: Any) -> list[str]:
    return [r["kind"] for r in _rows(
        stack, "SELECT kind FROM incident_timeline WHERE incident_id = %s ORDER BY id",
        incident_id)]


def _step_of(stack: Settings, phone: str) -> int | None:
    rows = _rows(stack, "SELECT step_id FROM notifications WHERE to_number = %s", phone)
    return rows[0]["step_id"] if rows else None


async def _signed_post(stack: Settings, path: str, params: dict[str, str],
                       token: str | None = None) -> httpx.Response:
    url = stack.public_base_url + path
    signature = RequestValidator(token or stack.twilio_auth_token).compute_signature(url, params)
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url, data=params, headers={"X-Twilio-Signature": signature})


def _to(requests: list[Any], numbers: set[str]) -> list[str]:
    return [r.form["To"][0] for r in requests if r.form.get("To", [""])[0] in numbers]


async def _after(stack: Settings, step_id: int, extra_s: float) -> None:
    """Wait until a cancelled step's due time (plus `extra_s`) has passed."""
    due = _rows(stack, "SELECT due_at FROM escalation_steps WHERE id = %s", step_id)[0]["due_at"]
    await eventually(lambda: due is None or datetime.now(UTC).timestamp()
                     > due.timestamp() + extra_s, 30, "the step's due time")


async def test_full_ladder_with_nobody_answering(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack, landline_3=True)
    elder = c.elders[0]
    c1, c2, c3 = (ct.phone for ct in elder.contacts)
    staff = c.staff[0].phone
    _policy(stack, elder.id, [
        ("console", "console", 0), ("sms", "staff", 0), ("call", "contact:1", 0),
        ("sms", "contacts", 0.3), ("call", "contact:2", 0.3), ("call", "contact:3", 0.3),
        ("call", "staff", 0.3), ("call", "emergency_line", 0.3),
    ], rounds=2, round_wait_s=0.3)
    await _alert(stack, c)
    await eventually(lambda: len(twilio.calls(c.emergency_line)) == 2, 60,
                     "two rounds ending at the emergency line")
    incident = _incident(stack, elder.id)
    assert incident is not None
    await eventually(lambda: "ladder_exhausted" in _timeline(stack, incident["id"]), 10,
                     "the console alarm that nobody responded")

    numbers = {c1, c2, c3, staff, c.emergency_line}
    one_round = [c1, c2, c3, staff, c.emergency_line]
    assert _to(twilio.calls(), numbers) == one_round * 2
    texts = _to(twilio.messages(), numbers)
    assert sorted(texts) == sorted([staff, c1, c2] * 2), "the landline is never texted"
    assert texts[0] == staff
    sms = twilio.messages(c1)[0].form["Body"][0]
    assert elder.name in sms and elder.address in sms
    twiml = twilio.calls(c1)[0].form["Twiml"][0]
    assert '<Say voice="Polly.Zhiyu" language="cmn-CN">' in twiml and "<Gather" in twiml
    assert "按1" in twiml
    assert f"{stack.public_base_url}/twilio/voice/gather?step=" in twiml
    assert all(r.status == 201 for r in twilio.calls(c1))

    incident = _incident(stack, elder.id)
    assert incident is not None
    assert incident["status"] == "notifying" and incident["first_notified_at"] is not None
    kinds = _timeline(stack, incident["id"])
    assert kinds[0] == "incident_opened" and kinds.count("console_alert") == 2
    assert "ladder_repeats" in kinds
    sent = _rows(stack, "SELECT status FROM notifications WHERE incident_id = %s",
                 incident["id"])
    assert {r["status"] for r in sent} == {"sent"} and len(sent) == 16


async def test_keypress_acknowledges_and_stops_the_ladder(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack)
    elder = c.elders[0]
    c1, c2, c3 = (ct.phone for ct in elder.contacts)
    _policy(stack, elder.id, [("console", "console", 0), ("call", "contact:1", 0),
                              ("sms", "contacts", 2.0), ("call", "contact:2", 0.2),
                              ("call", "contact:3", 0.2)])
    await _alert(stack, c)
    await eventually(lambda: twilio.calls(c1), 30, "the call to contact 1")
    step = await eventually(lambda: _step_of(stack, c1), 10, "the notification row")

    pressed = await _signed_post(stack, f"/twilio/voice/gather?step={step}",
                                 {"CallSid": "CA" + "1" * 32, "Digits": "1", "To": c1})
    assert pressed.status_code == 200
    assert '<Say voice="Polly.Zhiyu" language="cmn-CN">' in pressed.text and "谢谢" in pressed.text

    incident = _incident(stack, elder.id)
    assert incident is not None
    assert incident["status"] == "acknowledged"
    assert incident["acknowledged_via"] == "voice_keypress"
    assert elder.contacts[0].name in incident["acknowledged_by"]
    pending = _rows(stack, "SELECT id, status FROM escalation_steps WHERE incident_id = %s"
                    " AND seq > 2 AND purpose = 'ladder' ORDER BY seq", incident["id"])
    assert {r["status"] for r in pending} == {"cancelled"}
    await _after(stack, pending[0]["id"], 1.0)
    assert not twilio.calls(c2) and not twilio.calls(c3) and not twilio.messages(c1)
    assert "acknowledged" in _timeline(stack, incident["id"])

    again = await _signed_post(stack, f"/twilio/voice/gather?step={step}",
                               {"CallSid": "CA" + "1" * 32, "Digits": "1"})
    assert again.status_code == 200 and "已由" in again.text  # already taken


async def test_sms_reply_acknowledges_and_forged_webhooks_are_refused(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack)
    elder = c.elders[0]
    c1, c2 = elder.contacts[0].phone, elder.contacts[1].phone
    _policy(stack, elder.id, [("console", "console", 0), ("sms", "contacts", 0),
                              ("call", "contact:1", 3.0)])
    await _alert(stack, c)
    await eventually(lambda: twilio.messages(c2), 30, "the SMS to contact 2")
    step = await eventually(lambda: _step_of(stack, c2), 10, "the notification row")
    reply = {"From": c2, "To": stack.twilio_from_number, "Body": "收到",
             "MessageSid": "SM" + "2" * 32}

    async with httpx.AsyncClient(timeout=10) as client:
        url = stack.public_base_url
        forged = [
            await client.post(f"{url}/twilio/sms/inbound", data=reply),
            await client.post(f"{url}/twilio/sms/inbound", data=reply,
                              headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}),
        ]
    forged.append(await _signed_post(stack, "/twilio/sms/inbound", reply, token="wrong-token"))
    forged.append(await _signed_post(stack, f"/twilio/voice/gather?step={step}",
                                     {"Digits": "1"}, token="wrong-token"))
    forged.append(await _signed_post(stack, f"/twilio/status?step={step}",
                                     {"MessageStatus": "delivered"}, token="wrong-token"))
    assert [r.status_code for r in forged] == [403] * 5
    incident = _incident(stack, elder.id)
    assert incident is not None and incident["status"] == "notifying"

    delivered = await _signed_post(stack, f"/twilio/status?step={step}",
                                   {"MessageSid": "SM" + "3" * 32, "MessageStatus": "delivered"})
    assert delivered.status_code == 204
    answer = await _signed_post(stack, "/twilio/sms/inbound", reply)
    assert answer.status_code == 200 and "<Message>" in answer.text and elder.name in answer.text
    incident = _incident(stack, elder.id)
    assert incident is not None
    assert incident["status"] == "acknowledged" and incident["acknowledged_via"] == "sms_reply"
    assert elder.contacts[1].name in incident["acknowledged_by"]
    status = _rows(stack, "SELECT provider_status FROM notifications WHERE step_id = %s", step)
    assert status[0]["provider_status"] == "delivered"
    call_step = _rows(stack, "SELECT id, status FROM escalation_steps WHERE incident_id = %s"
                      " AND action = 'call'", incident["id"])[0]
    assert call_step["status"] == "cancelled"
    await _after(stack, call_step["id"], 1.0)
    assert not twilio.calls(c1)


async def test_answering_machine_is_not_an_acknowledgement(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack)
    elder = c.elders[0]
    c1, c2 = elder.contacts[0].phone, elder.contacts[1].phone
    _policy(stack, elder.id, [("console", "console", 0), ("call", "contact:1", 0),
                              ("sms", "contacts", 120), ("call", "contact:2", 120)])
    await _alert(stack, c)
    await eventually(lambda: twilio.calls(c1), 30, "the call to contact 1")
    step = await eventually(lambda: _step_of(stack, c1), 10, "the notification row")
    callback = await _signed_post(stack, f"/twilio/status?step={step}", {
        "CallSid": "CA" + "4" * 32, "CallStatus": "completed", "AnsweredBy": "machine_start"})
    assert callback.status_code == 204
    # Both 120 s waits are cut short: the machine did not take responsibility.
    await eventually(lambda: twilio.calls(c2), 15, "the call to contact 2")
    await eventually(lambda: twilio.messages(c2), 5, "the SMS rung, pulled forward too")
    incident = _incident(stack, elder.id)
    assert incident is not None and incident["status"] == "notifying"
    answered = _rows(stack, "SELECT answered_by, provider_status FROM notifications"
                     " WHERE step_id = %s", step)[0]
    assert answered == {"answered_by": "machine_start", "provider_status": "completed"}
    assert "call_not_acknowledged" in _timeline(stack, incident["id"])


async def test_two_dispatchers_make_each_call_exactly_once(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack, elders=6)
    for e in c.elders:
        _policy(stack, e.id, [("console", "console", 0), ("call", "contact:1", 0),
                              ("call", "contact:2", 0.2), ("call", "contact:3", 0.2)])
    while len(fleet.alive()) < 2:
        fleet.start()
    await eventually(lambda: _rows(  # each live dispatcher holds its worker lock
        stack, "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND d.datname = current_database()")[0]["n"] >= 2,
        30, "two dispatchers running")
    alerts = [await _alert(stack, c, n) for n in range(len(c.elders))]
    for n, a in enumerate(alerts):  # a redelivered alert changes nothing
        await _alert(stack, c, n, alert_id=a.alert_id)
    phones = {ct.phone for e in c.elders for ct in e.contacts}
    await eventually(lambda: set(_to(twilio.calls(), phones)) == phones, 60, "every call")
    last = _rows(stack, "SELECT max(s.id) AS id FROM escalation_steps s JOIN incidents i"
                 " ON i.id = s.incident_id WHERE i.community_id = %s", c.id)[0]["id"]
    await _after(stack, last, 1.0)
    made = _to(twilio.calls(), phones)
    assert sorted(made) == sorted(phones), "each call exactly once"
    incidents = _rows(stack, "SELECT count(*) AS n FROM incidents WHERE community_id = %s", c.id)
    assert incidents[0]["n"] == len(c.elders)
    workers = _rows(stack, "SELECT count(DISTINCT worker_lock) AS n FROM escalation_steps s"
                    " JOIN incidents i ON i.id = s.incident_id WHERE i.community_id = %s", c.id)
    assert workers[0]["n"] == 2, "both processes took steps"


async def test_twilio_500_then_success_is_retried(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack)
    elder = c.elders[0]
    c1 = elder.contacts[0].phone
    _policy(stack, elder.id, [("console", "console", 0), ("call", "contact:1", 0)])
    twilio.fail[c1] = [500]
    await _alert(stack, c)
    await eventually(lambda: [r.status for r in twilio.calls(c1)] == [500, 201], 30,
                     "a 500, then the same call again, accepted")
    note = await eventually(lambda: _rows(
        stack, "SELECT status, attempts FROM notifications WHERE to_number = %s"
        " AND status = 'sent'", c1), 10, "the notification marked sent")
    assert note[0]["attempts"] == 2
    incident = _incident(stack, elder.id)
    assert incident is not None
    assert "retrying" in _timeline(stack, incident["id"])


async def test_every_channel_failing_alarms_the_console(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack)
    elder = c.elders[0]
    c1, staff = elder.contacts[0].phone, c.staff[0].phone
    _policy(stack, elder.id, [("console", "console", 0), ("sms", "staff", 0),
                              ("call", "contact:1", 0)])
    twilio.fail[staff], twilio.fail[c1] = [503, 503], [503, 503]  # two attempts each
    await _alert(stack, c)
    incident = await eventually(lambda: _incident(stack, elder.id), 30, "the incident")
    await eventually(lambda: "all_channels_failed" in _timeline(stack, incident["id"]), 30,
                     "the console alarm")
    assert [r.status for r in twilio.messages(staff)] == [503, 503]
    assert [r.status for r in twilio.calls(c1)] == [503, 503]


async def test_killed_dispatcher_resumes_without_repeating_a_call(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack)
    elder = c.elders[0]
    c1, c2, c3 = (ct.phone for ct in elder.contacts)
    _policy(stack, elder.id, [("console", "console", 0), ("call", "contact:1", 0),
                              ("call", "contact:2", 2.0), ("call", "contact:3", 0.2)])
    for extra in fleet.alive()[1:]:  # exactly one process: the one that will be killed
        procs.stop(extra)
    first = fleet.alive()[0]
    await _alert(stack, c)
    await eventually(lambda: twilio.calls(c1), 30, "the call to contact 1")
    incident = _incident(stack, elder.id)
    assert incident is not None
    await eventually(lambda: _rows(
        stack, "SELECT 1 FROM escalation_steps WHERE incident_id = %s AND action = 'call'"
        " AND status = 'pending' AND due_at IS NOT NULL", incident["id"]), 10,
        "contact 2's step scheduled")
    first.kill()  # SIGKILL between steps: no goodbye, no cleanup
    first.wait()
    fleet.start()
    await eventually(lambda: twilio.calls(c3), 60, "the call to contact 3 after the restart")
    assert len(twilio.calls(c1)) == 1 and len(twilio.calls(c2)) == 1
    assert len(twilio.calls(c3)) == 1


async def test_an_alert_that_cannot_be_recorded_is_dead_lettered(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    c = _community(stack)
    elder = c.elders[0]
    _policy(stack, elder.id, [("console", "console", 0), ("call", "contact:1", 0)])
    now = datetime.now(UTC)
    stranger = Alert(alert_id=uuid.uuid4().hex, elder_id="E-nobody", community_id=c.id,
                     kind="sos", severity=Severity.CRITICAL, event_time=now, detected_at=now)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(kafka.ALERTS, b"{not json", b"E-nobody")
        await producer.send_and_wait(kafka.ALERTS, stranger.model_dump_json().encode(),
                                     b"E-nobody")
    finally:
        await producer.stop()
    await _alert(stack, c)  # behind the bad ones, still handled
    await eventually(lambda: twilio.calls(elder.contacts[0].phone), 30, "the call")
    records = await read_topic(
        stack.kafka_bootstrap, kafka.DEADLETTER,
        lambda rs: sum(r.get("source") == "dispatcher" for r in rs) >= 2)
    mine = [r for r in records if r.get("source") == "dispatcher"]
    assert "unreadable alert" in mine[0]["detail"]
    assert "E-nobody" in mine[1]["detail"] or "foreign key" in mine[1]["detail"]


@pytest.fixture
async def conn(stack: Settings) -> AsyncIterator[db.Connection]:
    async with await psycopg.AsyncConnection.connect(
        stack.database_url, row_factory=dict_row
    ) as c:
        yield c


async def test_alerts_join_and_a_more_severe_alert_escalates(
    stack: Settings, conn: db.Connection,
) -> None:
    from dispatcher.incidents import record_alert

    c = _community(stack)
    elder = c.elders[0]
    now = datetime.now(UTC)

    def alert(severity: Severity, aid: str) -> Alert:
        return Alert(alert_id=aid, elder_id=elder.id, community_id=c.id, kind="vital",
                     severity=severity, event_time=now, detected_at=now)

    first = await record_alert(conn, alert(Severity.MEDIUM, uuid.uuid4().hex))
    again = await record_alert(conn, alert(Severity.MEDIUM, uuid.uuid4().hex))
    assert first is not None and again == first
    steps_before = await (await conn.execute(
        "SELECT count(*) AS n FROM escalation_steps WHERE incident_id = %s", (first,)
    )).fetchone()
    worse = await record_alert(conn, alert(Severity.CRITICAL, uuid.uuid4().hex))
    assert worse == first
    row = await (await conn.execute(
        "SELECT severity, ladder FROM incidents WHERE id = %s", (first,))).fetchone()
    assert row is not None and row["severity"] == "critical"
    assert len(row["ladder"]["rungs"]) == 8  # the critical default replaced the medium one
    statuses = await (await conn.execute(
        "SELECT status, count(*) AS n FROM escalation_steps WHERE incident_id = %s"
        " GROUP BY status", (first,))).fetchall()
    by = {r["status"]: r["n"] for r in statuses}
    assert steps_before is not None and by["superseded"] == steps_before["n"]
    assert by["pending"] > 0
    # Hours later nobody has taken it yet: a new alert still joins (one incident on the board).
    await conn.execute("UPDATE incidents SET opened_at = now() - interval '3 hours'"
                       " WHERE id = %s", (first,))
    assert await record_alert(conn, alert(Severity.MEDIUM, uuid.uuid4().hex)) == first
    # Once acknowledged and its last alert older than the window, the next alert is a new
    # incident.
    await conn.execute("UPDATE incidents SET status = 'acknowledged',"
                       " last_alert_at = now() - interval '3 hours' WHERE id = %s", (first,))
    assert await record_alert(conn, alert(Severity.MEDIUM, uuid.uuid4().hex)) not in (None, first)
    await conn.rollback()  # never committed: no dispatcher runs these steps


async def test_an_alert_id_taken_by_another_elder_meanwhile_leaves_nothing(
    stack: Settings, conn: db.Connection,
) -> None:
    """Two dispatchers record one alert id for two elders at once (each under its own elder's
    lock, so neither sees the other's): the second waits on the first's alert row and, once
    that is committed, records nothing at all: no incident, step or timeline entry of it
    stays (its transaction is rolled back, not tidied up after)."""
    from dispatcher.incidents import record_alert
    from dispatcher.service import _record

    c = _community(stack, elders=2)
    a, b = c.elders
    now = datetime.now(UTC)
    aid = uuid.uuid4().hex

    def alert(elder_id: str) -> Alert:
        return Alert(alert_id=aid, elder_id=elder_id, community_id=c.id, kind="sos",
                     severity=Severity.CRITICAL, event_time=now, detected_at=now)

    async with await psycopg.AsyncConnection.connect(
        stack.database_url, row_factory=dict_row
    ) as second:
        assert await record_alert(conn, alert(a.id)) is not None  # not committed yet
        racing = asyncio.create_task(_record(second, alert(b.id)))

        async def waiting_on_the_alert_row() -> bool:
            async with await psycopg.AsyncConnection.connect(stack.database_url) as look:
                row = await (await look.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'INSERT INTO incident_alerts%%'")).fetchone()
                return bool(row and row[0])

        await eventually(waiting_on_the_alert_row)
        await conn.commit()
        assert await racing is None
    rows = await (await conn.execute(
        "SELECT i.elder_id, count(DISTINCT s.id) AS steps, count(DISTINCT t.id) AS entries"
        " FROM incidents i LEFT JOIN escalation_steps s ON s.incident_id = i.id"
        " LEFT JOIN incident_timeline t ON t.incident_id = i.id"
        " WHERE i.elder_id = ANY(%s) GROUP BY i.elder_id", ([a.id, b.id],))).fetchall()
    assert [r["elder_id"] for r in rows] == [a.id]
    assert rows[0]["steps"] > 0 and rows[0]["entries"] > 0
    owner = await (await conn.execute(
        "SELECT i.elder_id FROM incident_alerts x JOIN incidents i ON i.id = x.incident_id"
        " WHERE x.alert_id = %s", (aid,))).fetchall()
    assert [r["elder_id"] for r in owner] == [a.id]
    await conn.execute("UPDATE escalation_steps SET status = 'cancelled' WHERE incident_id IN"
                       " (SELECT id FROM incidents WHERE elder_id = %s)", (a.id,))
    await conn.commit()


async def test_a_press_without_a_position_is_placed_by_the_elders_fix_just_before_it(
    stack: Settings, conn: db.Connection,
) -> None:
    """An SOS button knows no position: the incident takes the watch's newest fix of the five
    minutes before the press (not an older one, not one after it), and a second alert joining
    the incident does not move it."""
    from psycopg.types.json import Jsonb

    from devices.readings import partitions
    from dispatcher.incidents import record_alert
    from dispatcher.whereabouts import PLACE, place_params, place_words

    c = _community(stack)
    elder = c.elders[0]
    now = datetime.now(UTC)
    await conn.execute("UPDATE elders SET home = %s WHERE id = %s",
                       (Jsonb({"lat": 31.2304, "lon": 121.4737, "radius_m": 100}), elder.id))
    await conn.commit()
    await partitions.ensure(conn, {(now - timedelta(minutes=m)).date() for m in (-1, 0, 3, 9)})

    def reading(minutes_before: float, lat: float) -> tuple[Any, ...]:
        at = now - timedelta(minutes=minutes_before)
        return (at, f"{elder.id}-smart_watch", f"fix-{minutes_before}", elder.id, c.id,
                "location", Jsonb({"location": {"lat": lat, "lon": 121.4737,
                                                "accuracy_m": 10}}), at)

    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO readings (event_time, device_id, msg_id, elder_id, community_id, type,"
            " data, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [reading(9, 31.30), reading(3, 31.2439), reading(-1, 31.40)])
    await conn.commit()

    def alert() -> Alert:
        return Alert(alert_id=uuid.uuid4().hex, elder_id=elder.id, community_id=c.id,
                     kind="sos", severity=Severity.CRITICAL, event_time=now, detected_at=now,
                     device_id=f"{elder.id}-sos_button")

    incident = await record_alert(conn, alert())
    assert incident is not None
    assert await record_alert(conn, alert()) == incident  # joins; the position stays
    row = await (await conn.execute(
        "SELECT location FROM incidents WHERE id = %s", (incident,))).fetchone()
    assert row is not None and row["location"]["lat"] == 31.2439
    place = await (await conn.execute(PLACE, place_params(incident))).fetchone()
    written, _ = place_words(place, "zh-Hans", elder.name, now)
    assert written.startswith("距家约1.5公里，正北方向"), written
    await conn.rollback()  # never committed: no dispatcher runs these steps


SMS_TEXT = "[社区关爱] 测试短信"  # the text of a "sending" SMS row (`_left_sending`)


async def _left_sending(stack: Settings, conn: db.Connection, action: str = "call",
                        fail: tuple[TwilioMock, list[int]] | None = None,
                        ) -> tuple[Any, int, str, str]:
    """What a dispatcher SIGKILLed right after committing contact 1's notification leaves: the
    step "running" under a worker lock nobody holds, the row "sending" (attempt 1), no SID.
    Returns the incident, the step, contact 1's and contact 2's numbers. `fail`: statuses the
    Twilio mock answers for contact 1 from the start."""
    from dispatcher.incidents import record_alert
    from dispatcher.steps import new_worker_lock

    c = _community(stack)
    elder = c.elders[0]
    c1, c2 = elder.contacts[0].phone, elder.contacts[1].phone
    if fail is not None:
        fail[0].fail_lists[c1] = fail[1]
    _policy(stack, elder.id, [(action, "contact:1", 0), ("call", "contact:2", 0.2)])
    now = datetime.now(UTC)
    incident = await record_alert(conn, Alert(
        alert_id=uuid.uuid4().hex, elder_id=elder.id, community_id=c.id, kind="fall",
        severity=Severity.CRITICAL, event_time=now, detected_at=now))
    dead = new_worker_lock()  # nobody holds it: its process is gone
    step = await (await conn.execute(
        "UPDATE escalation_steps SET status = 'running', worker_lock = %s, claimed_at = now()"
        " WHERE incident_id = %s AND seq = 1 RETURNING id", (dead, incident))).fetchone()
    assert step is not None
    await conn.execute(
        "INSERT INTO notifications (idempotency_key, incident_id, step_id, channel, to_number,"
        " recipient, body, status, attempts) VALUES (%s, %s, %s, %s, %s, 'c1', %s, 'sending', 1)",
        (f"step:{step['id']}", incident, step["id"], "voice" if action == "call" else "sms", c1,
         "<Response/>" if action == "call" else SMS_TEXT))
    await conn.commit()
    return incident, step["id"], c1, c2


async def _sent(conn: db.Connection, step_id: int) -> dict[str, Any] | None:
    return await (await conn.execute(
        "SELECT s.status, n.status AS sent, n.provider_sid FROM escalation_steps s"
        " JOIN notifications n ON n.step_id = s.id WHERE s.id = %s", (step_id,))).fetchone()


async def test_a_call_that_never_left_a_dead_dispatcher_is_made_once_after_recovery(
    stack: Settings, twilio: TwilioMock, conn: db.Connection, fleet: Fleet,
) -> None:
    """The dispatcher died between committing contact 1's call and asking Twilio. The live
    dispatcher asks Twilio, which has no such call: contact 1 is called, once, then the ladder
    goes on. (Before: marked unknown and never made, a first call lost.)"""
    incident, step, c1, c2 = await _left_sending(stack, conn)
    await eventually(lambda: twilio.calls(c2), 30, "the ladder moving on to contact 2")
    assert [r.status for r in twilio.calls(c1)] == [201], "contact 1 called exactly once"
    assert twilio.lists(c1), "Twilio was asked"
    assert len(twilio.calls(c2)) == 1
    row = await _sent(conn, step)
    assert row is not None and row["status"] == "done" and row["sent"] == "sent"
    assert row["provider_sid"] in {c["sid"] for c in twilio.listed("Calls", c1, None)}
    kinds = [r["kind"] for r in await (await conn.execute(
        "SELECT kind FROM incident_timeline WHERE incident_id = %s ORDER BY id", (incident,)
    )).fetchall()]
    assert "step_resumed" in kinds and "outcome_unknown" not in kinds


async def test_a_dispatcher_killed_between_commit_and_request_loses_no_call(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    """A real dispatcher process is SIGKILLed at the worst moment: contact 1's call committed as
    "sending", its request not yet written. A second process recovers the step, finds nothing
    at Twilio and makes the call: exactly one call to contact 1, then the ladder goes on."""
    c = _community(stack)
    elder = c.elders[0]
    c1, c2 = elder.contacts[0].phone, elder.contacts[1].phone
    _policy(stack, elder.id, [("call", "contact:1", 0), ("call", "contact:2", 0.2)])
    for proc in fleet.alive():
        procs.stop(proc)
    doomed = fleet.start({"ELDERCARE_FAULT_KILL_BEFORE_REQUEST": c1})
    try:
        await _alert(stack, c)
        await eventually(lambda: doomed.poll() is not None, 60, "the dispatcher killed")
        assert doomed.returncode == -9
        assert not twilio.calls(c1), "the request never left the killed process"
        assert _rows(stack, "SELECT 1 FROM notifications WHERE to_number = %s"
                     " AND status = 'sending'", c1), "left committed as sending"
    finally:
        fleet.start()
    await eventually(lambda: twilio.calls(c2), 60, "the ladder moving on to contact 2")
    assert [r.status for r in twilio.calls(c1)] == [201], "contact 1 called exactly once"
    assert len(twilio.calls(c2)) == 1


async def test_a_call_twilio_already_has_is_adopted_not_made_again(
    stack: Settings, twilio: TwilioMock, conn: db.Connection, fleet: Fleet,
) -> None:
    """The dispatcher died after its request reached Twilio, before recording the answer: the
    live dispatcher finds the call at Twilio and adopts its SID; contact 1 is not called twice."""
    from dispatcher.channels import TwilioChannel

    _, step, c1, c2 = await _left_sending(stack, conn)
    dead = TwilioChannel(stack)  # the dead process's request, right after its commit
    try:
        sid = await dead.call(c1, "<Response/>", None)
    finally:
        await dead.close()
    await eventually(lambda: twilio.calls(c2), 30, "the ladder moving on to contact 2")
    assert len(twilio.calls(c1)) == 1, "contact 1 called once, by the dead process"
    row = await _sent(conn, step)
    assert row == {"status": "done", "sent": "sent", "provider_sid": sid}


async def test_an_sms_twilio_already_has_is_adopted_and_one_it_lacks_is_sent(
    stack: Settings, twilio: TwilioMock, conn: db.Connection, fleet: Fleet,
) -> None:
    """The same question for SMS: adopted when Twilio has it (no duplicate text)."""
    from dispatcher.channels import TwilioChannel

    _, had, to_had, _ = await _left_sending(stack, conn, "sms")
    _, lacked, to_lacked, _ = await _left_sending(stack, conn, "sms")
    dead = TwilioChannel(stack)
    try:
        sid = await dead.sms(to_had, SMS_TEXT, None)
    finally:
        await dead.close()
    await eventually(lambda: twilio.messages(to_lacked), 30, "the SMS Twilio lacked")
    await eventually(lambda: _rows(stack, "SELECT 1 FROM notifications WHERE step_id = %s"
                                   " AND status = 'sent'", had), 30, "the SMS adopted")
    assert len(twilio.messages(to_had)) == 1 and len(twilio.messages(to_lacked)) == 1
    assert (await _sent(conn, had)) == {"status": "done", "sent": "sent", "provider_sid": sid}
    assert (await _sent(conn, lacked) or {}).get("sent") == "sent"


async def test_a_request_twilio_received_but_has_not_created_yet_is_not_doubled(
    stack: Settings, twilio: TwilioMock, conn: db.Connection, fleet: Fleet,
) -> None:
    """The dead process's request reached Twilio just before it died and Twilio lists the call
    only 0.6 s later. Recovery run at once still waits until the row is `settle_s` (1 s) old
    before asking, so it finds the call instead of making a second one."""
    from dispatcher.channels import TwilioChannel
    from dispatcher.recovery import Reconciling
    from dispatcher.steps import StepRunner, new_worker_lock

    for proc in fleet.alive():  # this test's recovery runs here, at a moment it chooses
        procs.stop(proc)
    try:
        _, step, c1, _ = await _left_sending(stack, conn)
        twilio.lag[c1] = 0.6
        channel = TwilioChannel(stack)
        pool = db.pool(stack.database_url, max_size=3)
        await pool.open()
        runner = StepRunner(pool, channel, stack.public_base_url, new_worker_lock(),
                            reconciling=Reconciling(settle_s=1.0, timeout_s=5.0))
        try:
            await channel.call(c1, "<Response/>", None)  # the dead process's request
            await runner.recover()
            await runner.run_due()  # what a recovered step would do next
            await runner.drain(10)
        finally:
            await pool.close()
            await channel.close()
        assert len(twilio.calls(c1)) == 1, "called once, not twice"
        row = await _sent(conn, step)
        assert row is not None and row["sent"] == "sent"
    finally:
        fleet.start()


async def test_the_dry_run_channel_answers_the_same_question(
    stack: Settings, conn: db.Connection, fleet: Fleet,
) -> None:
    """ELDERCARE_NOTIFY=dry-run: the channel keeps what it "sent" (table dry_run_sent), so
    recovery behaves as with Twilio: a "send" it has is adopted, one it lacks is made once."""
    from dispatcher.channels import DryRunChannel
    from dispatcher.recovery import Reconciling
    from dispatcher.steps import StepRunner, new_worker_lock

    for proc in fleet.alive():  # no Twilio dispatcher takes these steps
        procs.stop(proc)
    try:
        _, had, to_had, _ = await _left_sending(stack, conn)
        _, lacked, to_lacked, _ = await _left_sending(stack, conn)
        channel = DryRunChannel(stack.database_url)
        sid = await channel.call(to_had, "<Response/>", None)  # the dead process's "send"
        pool = db.pool(stack.database_url, max_size=3)
        await pool.open()
        runner = StepRunner(pool, channel, stack.public_base_url, new_worker_lock(),
                            reconciling=Reconciling(settle_s=0.2, timeout_s=5.0))
        try:
            await runner.recover()
            await runner.run_due()
            await runner.drain(10)
        finally:
            await pool.close()
            await channel.close()
        sent = {r["to_number"]: r["n"] for r in _rows(
            stack, "SELECT to_number, count(*) AS n FROM dry_run_sent WHERE kind = 'call'"
            " AND to_number = ANY(%s) GROUP BY to_number", [to_had, to_lacked])}
        assert sent == {to_had: 1, to_lacked: 1}, "each call \"sent\" exactly once"
        assert (await _sent(conn, had)) == {"status": "done", "sent": "dry_run",
                                            "provider_sid": sid}
        assert (await _sent(conn, lacked) or {}).get("sent") == "dry_run"
    finally:
        fleet.start()


async def test_requests_that_timed_out_but_reached_twilio_are_adopted_not_repeated(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    """Twilio takes 2 s to answer, the dispatcher waits 1 s. The SMS is retried, but Twilio is
    asked first: it has the text, which is adopted (one SMS, not two). The call (unknown, never
    repeated) is settled by asking too: it is recorded as sent with Twilio's SID."""
    c = _community(stack)
    elder = c.elders[0]
    c1, c2 = elder.contacts[0].phone, elder.contacts[1].phone
    _policy(stack, elder.id, [("sms", "contact:1", 0), ("call", "contact:2", 0)])
    twilio.delay.update({c1: 2.0, c2: 2.0})
    impatient = stack.model_copy(update={"dispatcher_twilio_timeout_s": 1.0})
    try:
        _only(fleet, impatient)
        await _alert(stack, c)
        rows = await eventually(lambda: [r for r in _rows(
            stack, "SELECT to_number, status, provider_sid FROM notifications"
            " WHERE to_number = ANY(%s) AND status = 'sent'", [c1, c2])] if len(_rows(
            stack, "SELECT 1 FROM notifications WHERE to_number = ANY(%s) AND status = 'sent'",
            [c1, c2])) == 2 else None, 60, "both recorded as sent")
    finally:
        _only(fleet, stack)
    assert len(twilio.messages(c1)) == 1, "the text was not sent twice"
    assert len(twilio.calls(c2)) == 1
    sids = {r["to_number"]: r["provider_sid"] for r in rows}
    assert sids[c1] == twilio.listed("Messages", c1, None)[0]["sid"]
    assert sids[c2] == twilio.listed("Calls", c2, None)[0]["sid"]


async def test_an_outcome_twilio_cannot_be_asked_about_is_unknown_then_settled(
    stack: Settings, twilio: TwilioMock, conn: db.Connection, fleet: Fleet,
) -> None:
    """Twilio cannot be asked (503) when the dead dispatcher's step is recovered: as before,
    staff see "outcome unknown" and the ladder moves on. Asked again later, Twilio has no such
    call, the incident is still unanswered: contact 1 is called then, exactly once."""
    incident, step, c1, c2 = await _left_sending(stack, conn, fail=(twilio, [503]))
    await eventually(lambda: twilio.calls(c2), 30, "the ladder moving on to contact 2")
    kinds = [r["kind"] for r in await (await conn.execute(
        "SELECT kind FROM incident_timeline WHERE incident_id = %s ORDER BY id", (incident,)
    )).fetchall()]
    assert "outcome_unknown" in kinds
    await eventually(lambda: twilio.calls(c1), 30, "contact 1 called once Twilio answers")
    await eventually(lambda: _rows(stack, "SELECT 1 FROM notifications WHERE step_id = %s"
                                   " AND status = 'sent'", step), 10, "the call recorded")
    assert [r.status for r in twilio.lists(c1)][:1] == [503]
    assert [r.status for r in twilio.calls(c1)] == [201]
    assert len(twilio.calls(c2)) == 1


async def test_service_statistics_per_community_and_month(
    stack: Settings, conn: db.Connection,
) -> None:
    from dispatcher.stats import service_stats
    from foundation.security import SYSTEM, Principal

    c = _community(stack)
    elder = c.elders[0]
    for notified_s, ack_s, resolved_s in ((2, 30, 600), (3, 120, 900), (4, None, None)):
        await conn.execute(
            "INSERT INTO incidents (elder_id, community_id, kind, severity, status, event_time,"
            " opened_at, alert_at, first_notified_at, acknowledged_at, resolved_at)"
            " VALUES (%(e)s, %(c)s, 'sos', 'critical', 'resolved', %(t)s, %(t)s, %(t)s,"
            " %(t)s + make_interval(secs => %(n)s),"
            " %(t)s + make_interval(secs => %(a)s), %(t)s + make_interval(secs => %(r)s))",
            {"e": elder.id, "c": c.id, "t": datetime(2026, 3, 10, 4, tzinfo=UTC),
             "n": notified_s, "a": ack_s, "r": resolved_s})
    await conn.commit()
    rows = await service_stats(conn, SYSTEM, community=c.id)
    assert len(rows) == 1
    row = rows[0]
    assert row["month"] == "2026-03" and row["incidents"] == 3 and row["acknowledged"] == 2
    assert row["first_notification_p50_s"] == 3.0
    assert row["acknowledgement_p50_s"] == 75.0
    assert row["acknowledged_within_60s"] == pytest.approx(1 / 3, abs=1e-3)
    assert row["acknowledged_within_180s"] == pytest.approx(2 / 3, abs=1e-3)
    other = Principal("someone", "duty_staff", frozenset({"c-elsewhere"}))
    assert await service_stats(conn, other, community=c.id) == []


# -- a backlog behind a slow Twilio ---------------------------------------------------------

async def _alerts(stack: Settings, community: Community) -> None:
    """One SOS alert per elder of `community`, at once (one producer)."""
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for elder in community.elders:
            alert = Alert(alert_id=uuid.uuid4().hex, elder_id=elder.id,
                          community_id=community.id, kind="sos", severity=Severity.CRITICAL,
                          event_time=now, detected_at=now, device_id=f"{elder.id}-sos_button")
            await producer.send(kafka.ALERTS, alert.model_dump_json().encode(), alert.key())
        await producer.flush()
    finally:
        await producer.stop()


def _sorted_if_two(requests: list[Any], numbers: set[str]) -> list[float] | None:
    """When the requests to `numbers` have arrived, the times they did, sorted."""
    times = sorted(r.arrived for r in requests if r.form["To"][0] in numbers)
    return times if len(times) >= 2 else None


def _only(fleet: Fleet, settings: Settings | None = None) -> Fleet:
    """Exactly one dispatcher process (of `settings`, default the module's)."""
    for proc in fleet.alive():
        procs.stop(proc)
    fleet.settings = settings or fleet.settings
    fleet.start()
    return fleet


async def test_a_backlog_behind_a_slow_twilio_has_every_first_call_requested_at_once(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    """40 elders press at once and Twilio takes 3 s to answer each call: one dispatcher process
    asks for every first call within seconds. (When a step worker waited for Twilio's answer,
    8 workers made 8 calls per 3 s: the last first call was asked for 12 s after the first.)"""
    c = _community(stack, elders=40)
    for e in c.elders:
        _policy(stack, e.id, [("console", "console", 0), ("call", "contact:1", 0)])
    phones = {e.contacts[0].phone for e in c.elders}
    twilio.delay.update(dict.fromkeys(phones, 3.0))
    _only(fleet)
    await _alerts(stack, c)
    await eventually(lambda: set(_to(twilio.calls(), phones)) == phones, 90, "every first call")
    asked = sorted(r.arrived for r in twilio.calls() if r.form["To"][0] in phones)
    assert len(asked) == len(phones), "each first call exactly once"
    assert asked[-1] - asked[0] < 6.0, f"first calls asked over {asked[-1] - asked[0]:.1f} s"


async def test_a_new_incidents_first_call_goes_before_later_rungs_of_others(
    stack: Settings, twilio: TwilioMock, fleet: Fleet,
) -> None:
    """One Twilio request at a time, each answered in 1.5 s: three incidents' calls and their
    family SMS (all due at once) queue. A new SOS made meanwhile is called next, not after the
    SMS that came due before it."""
    old, new = _community(stack, elders=3), _community(stack)
    for e in old.elders:
        _policy(stack, e.id, [("console", "console", 0), ("call", "contact:1", 0),
                              ("sms", "contacts", 0)])
    _policy(stack, new.elders[0].id, [("console", "console", 0), ("call", "contact:1", 0)])
    texted = {ct.phone for e in old.elders for ct in e.contacts}
    called = new.elders[0].contacts[0].phone
    twilio.delay.update(dict.fromkeys([*texted, called], 1.5))
    one_at_a_time = stack.model_copy(update={"dispatcher_requests": 1, "dispatcher_workers": 1})
    try:
        _only(fleet, one_at_a_time)
        await _alerts(stack, old)
        await eventually(lambda: _rows(  # (the mock lists a request once it has answered)
            stack, "SELECT 1 FROM notifications WHERE channel = 'sms' AND to_number = ANY(%s)",
            list(texted)), 60, "the first family SMS under way")
        await _alerts(stack, new)  # due after every SMS of the others
        await eventually(lambda: twilio.calls(called), 60, "the new incident's call")
        later = await eventually(lambda: _sorted_if_two(twilio.messages(), texted), 60,
                                 "a second family SMS")
        assert twilio.calls(called)[0].arrived < later[1], \
            "the new first call is the next request after the SMS already under way"
    finally:
        _only(fleet, stack)
