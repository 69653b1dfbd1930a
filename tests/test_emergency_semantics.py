"""Emergency semantics against real PostgreSQL (issue 16): one incident per elder emergency,
repeated presses, ladders per kind, the duty roster in the community's own time zone, reminders
and the outcome SMS. The step runner runs in this process against the Prism mock of Twilio,
so what a family member or a duty officer receives is read back at the mock."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from devices.registry import Community, Staff, save
from dispatcher import lifecycle, roster
from dispatcher.channels import TwilioChannel
from dispatcher.incidents import record_alert
from dispatcher.steps import RetryPolicy, StepRunner, new_worker_lock
from foundation import db
from foundation.config import Settings
from foundation.contracts.alerts import Alert, Severity
from tests.conftest import make_community
from tests.twilio_mock import TwilioMock

CN = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def url(settings: Settings) -> Iterator[str]:
    """A database of this module's own: no dispatcher process takes these steps."""
    name = f"emergency_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    own = make_conninfo(settings.database_url, dbname=name)
    db.upgrade(own)
    yield own


@pytest.fixture
async def conn(url: str) -> AsyncIterator[db.Connection]:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as c:
        yield c


def _community(url: str, *, staff: list[str] | None = None, time_zone: str = "Asia/Shanghai",
               street: str | None = None) -> Community:
    """A fresh community on a street of its own; `staff` names its duty staff."""
    c = make_community()
    tag = uuid.uuid4().int % 10**8
    c = dataclasses.replace(c, emergency_line=f"+8621{tag:08d}",
                            street=street or f"街道{tag}")
    if staff is not None:
        c = dataclasses.replace(c, staff=[_staff(c.id, name) for name in staff])
    save(url, [c])
    with psycopg.connect(url) as pg:
        pg.execute("UPDATE communities SET time_zone = %s WHERE id = %s", (time_zone, c.id))
    return c


def _alert(c: Community, kind: str = "sos", severity: Severity = Severity.CRITICAL,
           alert_id: str | None = None, maintenance: bool = False) -> Alert:
    now = datetime.now(UTC)
    elder = c.elders[0]
    return Alert(alert_id=alert_id or uuid.uuid4().hex, elder_id=elder.id, community_id=c.id,
                 kind=kind, severity=severity, event_time=now, detected_at=now,
                 device_id=f"{elder.id}-sos_button", room="卧室", maintenance=maintenance)


async def _record(conn: db.Connection, alert: Alert) -> Any:
    async with conn.transaction():
        return await record_alert(conn, alert)


async def _rows(conn: db.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    rows = await (await conn.execute(sql, args)).fetchall()
    await conn.commit()
    return rows


async def _due_now(conn: db.Connection, incident: Any, purpose: str = "ladder") -> list[
        tuple[str, str]]:
    """(action, recipient kind or name) of the steps due at once, in order."""
    rows = await _rows(conn, "SELECT action, target FROM escalation_steps WHERE incident_id = %s"
                       " AND purpose = %s AND status = 'pending' AND due_at <= now() + interval"
                       " '1 second' ORDER BY seq", incident, purpose)
    return [(r["action"], r["target"].get("kind", "")) for r in rows]


async def _timeline(conn: db.Connection, incident: Any) -> list[str]:
    return [r["kind"] for r in await _rows(
        conn, "SELECT kind FROM incident_timeline WHERE incident_id = %s ORDER BY id", incident)]


async def _run_steps(settings: Settings, url: str) -> int:
    """Every step due now, run by a step runner of this process against the Twilio mock."""
    lock = new_worker_lock()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s)", (lock,))
        pool = db.pool(url, max_size=3)
        await pool.open()
        channel = TwilioChannel(settings)
        try:
            runner = StepRunner(pool, channel, settings.public_base_url, lock,
                                RetryPolicy(2, 0.1, 10))
            ran = 0
            while claimed := await runner.run_due():  # and the steps they made due now
                await runner.drain(30)
                ran += claimed
            return ran
        finally:
            await channel.close()
            await pool.close()


# -- the same alert twice ------------------------------------------------------------------

async def test_recording_the_same_alert_twice_is_a_no_op_never_an_exception(
    url: str, conn: db.Connection,
) -> None:
    c = _community(url)
    alert = _alert(c)
    first = await _record(conn, alert)
    assert first is not None
    assert await _record(conn, alert) is None

    # Two dispatchers receive the same alert at the same moment (a redelivery after a
    # rebalance): one records it, the other sees it recorded; neither raises.
    again = _alert(c, alert_id=uuid.uuid4().hex)

    async def one() -> Any:
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as other:
            return await _record(other, again)

    results = await asyncio.gather(one(), one(), one())
    assert sorted(map(str, results)) == sorted([str(first), "None", "None"])
    incidents = await _rows(conn, "SELECT id FROM incidents WHERE elder_id = %s", alert.elder_id)
    assert len(incidents) == 1


# -- one incident per emergency ------------------------------------------------------------

async def test_sos_then_fall_is_one_incident_with_one_ladder(
    url: str, conn: db.Connection,
) -> None:
    c = _community(url)
    c1 = c.elders[0].contacts[0].phone
    sos = await _record(conn, _alert(c, "sos"))
    fall = await _record(conn, _alert(c, "fall"))
    vital = await _record(conn, _alert(c, "vital", Severity.HIGH))
    assert sos == fall == vital
    calls_to_c1 = await _rows(
        conn, "SELECT round FROM escalation_steps WHERE incident_id = %s AND action = 'call'"
        " AND target->>'phone' = %s AND status = 'pending'", sos, c1)
    assert [r["round"] for r in calls_to_c1] == [1, 2, 3], "one ladder: one call per round"
    joined = await _rows(conn, "SELECT detail FROM incident_timeline WHERE incident_id = %s"
                         " AND kind = 'alert_joined' ORDER BY id", sos)
    assert [j["detail"]["kind"] for j in joined] == ["fall", "vital"]
    # A device battery is never part of the emergency.
    battery = await _record(conn, _alert(c, "low_battery", Severity.LOW, maintenance=True))
    assert battery not in (None, sos)


async def test_more_severe_alert_raises_severity_of_the_one_incident(
    url: str, conn: db.Connection,
) -> None:
    c = _community(url)
    first = await _record(conn, _alert(c, "inactivity", Severity.HIGH))
    worse = await _record(conn, _alert(c, "fall", Severity.CRITICAL))
    assert worse == first
    row = (await _rows(conn, "SELECT severity FROM incidents WHERE id = %s", first))[0]
    assert row["severity"] == "critical"
    assert "escalated" in await _timeline(conn, first)


# -- repeated presses ---------------------------------------------------------------------

async def test_press_after_acknowledgement_realerts_staff_and_the_acknowledger(
    url: str, conn: db.Connection, settings: Settings, twilio: TwilioMock,
) -> None:
    c = _community(url)
    staff = c.staff[0]
    incident = await _record(conn, _alert(c))
    async with conn.transaction():
        assert await lifecycle.acknowledge(conn, incident, "值班员", "console", by=staff.id)
    again = await _record(conn, _alert(c))  # 20 s later: nobody came
    assert again == incident
    kinds = await _timeline(conn, incident)
    assert kinds[-2:] == ["alert_joined", "realerted"]
    due = await _due_now(conn, incident, "realert")
    # The acknowledger is the duty officer here: one SMS and one call, never two of each.
    assert sorted(due) == sorted([("console", "console"), ("sms", "staff"),
                                  ("call", "acknowledger")])
    await _run_steps(settings, url)
    sms = [r.form["Body"][0] for r in twilio.messages(staff.phone)]
    assert any("再次" in b and c.elders[0].name in b for b in sms), sms
    call = twilio.calls(staff.phone)[-1].form["Twiml"][0]
    assert "老人再次求救" in call
    # A burst of presses is one re-alert, but every press is on the timeline.
    await _record(conn, _alert(c))
    kinds = await _timeline(conn, incident)
    assert kinds[-1] == "alert_joined" and kinds.count("realerted") == 1


async def test_press_after_resolution_opens_a_new_incident(
    url: str, conn: db.Connection,
) -> None:
    c = _community(url)
    incident = await _record(conn, _alert(c))
    async with conn.transaction():
        assert await lifecycle.resolve(conn, incident, "false_alarm", who="值班员")
    third = await _record(conn, _alert(c))
    assert third not in (None, incident)
    assert await _due_now(conn, third)  # a fresh ladder, due at once


# -- ladders per kind ---------------------------------------------------------------------

async def test_fire_moves_the_community_first_and_tells_the_family_to_call_119(
    url: str, conn: db.Connection, settings: Settings, twilio: TwilioMock,
) -> None:
    c = _community(url)
    c1 = c.elders[0].contacts[0].phone
    incident = await _record(conn, _alert(c, "smoke"))
    due = await _due_now(conn, incident)
    assert due[:3] == [("console", "console"), ("call", "staff"), ("call", "emergency_line")]
    assert ("sms", "contact") in due and ("call", "contact") not in due
    await _run_steps(settings, url)
    assert twilio.calls(c.emergency_line) and twilio.calls(c.staff[0].phone)
    assert "119" in twilio.messages(c1)[-1].form["Body"][0]
    assert not twilio.calls(c1), "the family is called only after the community"


async def test_sos_calls_contact_1_and_texts_every_contact_and_staff(
    url: str, conn: db.Connection,
) -> None:
    c = _community(url)
    incident = await _record(conn, _alert(c, "sos"))
    due = await _due_now(conn, incident)
    assert due == [("console", "console"), ("sms", "staff"), ("call", "contact")]


async def test_missed_checkin_calls_the_elder_first(url: str, conn: db.Connection) -> None:
    c = _community(url)
    with psycopg.connect(url) as pg:
        pg.execute("UPDATE elders SET phone = '+8613300001111' WHERE id = %s", (c.elders[0].id,))
    incident = await _record(conn, _alert(c, "checkin_missed", Severity.MEDIUM))
    steps = await _rows(conn, "SELECT action, target FROM escalation_steps WHERE incident_id = %s"
                        " ORDER BY seq", incident)
    calls = [(s["target"]["kind"], s["target"].get("priority")) for s in steps
             if s["action"] == "call"]
    assert calls == [("elder", None), ("contact", 1)]


async def test_maintenance_is_a_staff_work_item_that_wakes_nobody(
    url: str, conn: db.Connection, settings: Settings, twilio: TwilioMock,
) -> None:
    c = _community(url)
    incident = await _record(conn, _alert(c, "low_battery", Severity.LOW, maintenance=True))
    steps = await _rows(conn, "SELECT action FROM escalation_steps WHERE incident_id = %s",
                        incident)
    assert {s["action"] for s in steps} == {"console", "queue"}
    await _run_steps(settings, url)
    assert "work_queued" in await _timeline(conn, incident)
    assert not twilio.messages(c.staff[0].phone)


async def test_community_rules_are_data(url: str, conn: db.Connection) -> None:
    """A community that keeps SOS and smoke apart, with its own SOS ladder."""
    c = _community(url)
    rules = {"grouping": [{"kinds": ["sos", "fall"], "window_s": 600}],
             "ladders": {"sos": {"rungs": [{"action": "call", "target": "staff"}]}}}
    await conn.execute("INSERT INTO community_rules (community_id, rules) VALUES (%s, %s)",
                       (c.id, json.dumps(rules)))
    await conn.commit()
    sos = await _record(conn, _alert(c, "sos"))
    smoke = await _record(conn, _alert(c, "smoke"))
    assert smoke != sos
    assert await _due_now(conn, sos) == [("call", "staff")]


# -- the duty roster ----------------------------------------------------------------------

def _staff(cid: str, name: str) -> Staff:
    return Staff(f"{cid}-{uuid.uuid4().hex[:6]}", cid, name,
                 f"+8613{uuid.uuid4().int % 10**9:09d}")


def _roster(url: str, staff_id: str, shifts: list[dict[str, Any]], **extra: Any) -> None:
    sets = ", ".join(f"{k} = %s" for k in extra)
    with psycopg.connect(url) as pg:
        pg.execute(f"UPDATE staff SET duty_roster = %s{', ' + sets if sets else ''}"
                   " WHERE id = %s", (json.dumps(shifts), *extra.values(), staff_id))


def _every_day(start: str, end: str) -> list[dict[str, Any]]:
    return [{"weekday": d, "start": start, "end": end} for d in range(7)]


async def test_at_3am_local_time_off_shift_staff_are_left_alone(
    url: str, conn: db.Connection,
) -> None:
    c = _community(url, staff=["白班", "夜班"])
    day, night = c.staff
    _roster(url, day.id, _every_day("08:00", "20:00"))
    _roster(url, night.id, _every_day("20:00", "08:00"))  # past midnight
    three_am = datetime(2026, 3, 11, 3, 0, tzinfo=CN)
    people, level = await roster.on_duty(conn, c.id, three_am)
    assert [p["name"] for p in people] == ["夜班"] and level == "community"
    noon = datetime(2026, 3, 11, 12, 0, tzinfo=CN)
    assert [p["name"] for p in (await roster.on_duty(conn, c.id, noon))[0]] == ["白班"]
    # The same instant is 15:00 the day before in New York: the day shift there.
    with psycopg.connect(url) as pg:
        pg.execute("UPDATE communities SET time_zone = 'America/New_York' WHERE id = %s", (c.id,))
    assert [p["name"] for p in (await roster.on_duty(conn, c.id, three_am))[0]] == ["白班"]


async def test_an_alert_reaches_only_staff_on_shift_now(url: str, conn: db.Connection) -> None:
    """Whatever the time of the run: one shift covers the current local hour, the other not."""
    c = _community(url, staff=["在班", "下班"])
    on, off = c.staff
    now = datetime.now(CN)
    start = (now - timedelta(hours=1)).strftime("%H:00")
    end = (now + timedelta(hours=2)).strftime("%H:00")
    _roster(url, on.id, _every_day(start, end))
    _roster(url, off.id, _every_day(end, start))
    incident = await _record(conn, _alert(c))
    texted = await _rows(conn, "SELECT target->>'name' AS name FROM escalation_steps"
                         " WHERE incident_id = %s AND target->>'kind' = 'staff'", incident)
    assert {r["name"] for r in texted} == {"在班"}


async def test_nobody_on_duty_goes_to_the_street_level(url: str, conn: db.Connection) -> None:
    c = _community(url, staff=["夜班"])
    night = c.staff[0]
    now = datetime.now(CN)
    _roster(url, night.id, _every_day((now + timedelta(hours=2)).strftime("%H:00"),
                                      (now + timedelta(hours=3)).strftime("%H:00")))
    with psycopg.connect(url) as pg:
        pg.execute("INSERT INTO staff (id, community_id, name, phone, role, scope, street)"
                   " VALUES (%s, NULL, '街道督导', '+8613900002222', 'street_supervisor',"
                   " 'street', %s)", (f"{c.id}-street", c.street))
    incident = await _record(conn, _alert(c))
    texted = await _rows(conn, "SELECT target->>'name' AS name FROM escalation_steps"
                         " WHERE incident_id = %s AND target->>'kind' = 'staff'", incident)
    assert {r["name"] for r in texted} == {"街道督导"}
    assert "duty_level" in await _timeline(conn, incident)


# -- follow-up ----------------------------------------------------------------------------

async def test_reminder_then_outcome_sms_to_every_contact_told(
    url: str, conn: db.Connection, settings: Settings, twilio: TwilioMock,
) -> None:
    c = _community(url)
    elder = c.elders[0]
    with psycopg.connect(url) as pg:
        pg.execute("UPDATE contacts SET language = 'en' WHERE elder_id = %s AND priority = 2",
                   (elder.id,))
        pg.execute("INSERT INTO escalation_policies (elder_id, severity, policy) VALUES"
                   " (%s, 'critical', %s)", (elder.id, json.dumps({"rungs": [
                       {"action": "call", "target": "contact:1"},
                       {"action": "sms", "target": "contacts"}]})))
    incident = await _record(conn, _alert(c))
    # Contact 1 is called and every contact texted (the leading steps).
    await _run_steps(settings, url)
    async with conn.transaction():
        assert await lifecycle.acknowledge(conn, incident, "联系人1 (+8613800000000)",
                                           "sms_reply")
    reminders = await _rows(
        conn, "SELECT target->>'kind' AS kind, extract(epoch FROM due_at - now()) AS in_s"
        " FROM escalation_steps WHERE incident_id = %s AND purpose = 'reminder' ORDER BY seq",
        incident)
    assert reminders[0]["kind"] == "acknowledger" and 590 < float(reminders[0]["in_s"]) <= 600
    # The reminder comes due while nobody resolved it.
    await conn.execute("UPDATE escalation_steps SET due_at = now() WHERE incident_id = %s"
                       " AND purpose = 'reminder' AND due_at IS NOT NULL", (incident,))
    await conn.commit()
    await _run_steps(settings, url)
    await _run_steps(settings, url)  # the duty lead's SMS is scheduled after the first
    assert any("仍未处理完毕" in r.form["Body"][0]
               for r in twilio.messages("+8613800000000"))
    assert any("仍未处理完毕" in r.form["Body"][0] for r in twilio.messages(c.staff[0].phone))

    async with conn.transaction():
        assert await lifecycle.resolve(conn, incident, "help_sent", "已送医", who="值班员")
    await _run_steps(settings, url)
    for contact in elder.contacts:
        bodies = [r.form["Body"][0] for r in twilio.messages(contact.phone)]
        outcome = bodies[-1]
        assert "值班员" in outcome, bodies
        if contact.priority == 2:
            assert "resolved: Help sent" in outcome
        else:
            assert "已处理完毕" in outcome and elder.name in outcome
    assert "resolved" in await _timeline(conn, incident)
