"""Alerts become incidents. Alerts of the same elder and kind join the open incident; a more
severe alert escalates it (its ladder replaces the pending steps). Everything happens in the
caller's transaction, so an alert that is seen twice (Kafka redelivery) changes nothing the second
time."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from detectors.alerts import Alert, Severity
from dispatcher.ladder import Policy, Rung, default_policy, parse_policy, policy_key, staff_only
from dispatcher.metrics import INCIDENTS
from dispatcher.phones import can_receive_sms
from eldercare import logs

log = logs.get(__name__)

JOIN_WINDOW = timedelta(minutes=30)


async def timeline(
    conn: AsyncConnection[Any], incident_id: uuid.UUID | str, entry: str, **detail: Any,
) -> None:
    """Append to the incident's timeline; a trigger pushes the row to every console."""
    await conn.execute(
        "INSERT INTO incident_timeline (incident_id, kind, detail) VALUES (%s, %s, %s)",
        (incident_id, entry, json.dumps(detail, ensure_ascii=False, default=str)),
    )


async def record_alert(conn: AsyncConnection[Any], alert: Alert) -> uuid.UUID | None:
    """Open or join an incident for `alert`; None if this alert was already recorded.

    An alert joins the elder's incident of the same kind while nobody has taken it (however
    old: its ladder is still running), or while it is younger than JOIN_WINDOW."""
    open_row = await (await conn.execute(
        "SELECT id, severity, status FROM incidents WHERE elder_id = %s AND kind = %s"
        " AND status <> 'resolved' AND (status IN ('open', 'notifying') OR opened_at > now() - %s)"
        " ORDER BY opened_at DESC LIMIT 1"
        " FOR UPDATE",
        (alert.elder_id, alert.kind, JOIN_WINDOW),
    )).fetchone()
    if open_row is not None:
        incident_id: uuid.UUID = open_row["id"]
        if not await _claim_alert(conn, alert, incident_id):
            return None
        await timeline(conn, incident_id, "alert_joined", alert_id=alert.alert_id)
        if alert.severity.rank > Severity(open_row["severity"]).rank:
            await _escalate(conn, incident_id, alert, open_row["status"])
        return incident_id

    incident_id = uuid.uuid4()
    policy = await policy_for(conn, alert.elder_id, alert.severity, alert.maintenance)
    await conn.execute(
        "INSERT INTO incidents (id, elder_id, community_id, kind, severity, status, event_time,"
        " alert_at, maintenance, ladder) VALUES (%s, %s, %s, %s, %s, 'open', %s, %s, %s, %s)",
        (incident_id, alert.elder_id, alert.community_id, alert.kind, alert.severity,
         alert.event_time, alert.detected_at, alert.maintenance, policy.model_dump_json()),
    )
    if not await _claim_alert(conn, alert, incident_id):
        raise RuntimeError("alert recorded concurrently")  # rolls the new incident back
    await timeline(conn, incident_id, "incident_opened", kind=alert.kind, severity=alert.severity,
                   alert_id=alert.alert_id, device_id=alert.device_id, room=alert.room)
    await materialise(conn, incident_id, alert.elder_id, alert.community_id, policy)
    INCIDENTS.labels(alert.kind, alert.severity.value).inc()
    return incident_id


async def policy_for(
    conn: AsyncConnection[Any], elder_id: str, severity: Severity, maintenance: bool,
) -> Policy:
    """The elder's own policy for this severity if one is stored, else the default."""
    row = await (await conn.execute(
        "SELECT policy FROM escalation_policies WHERE elder_id = %s AND severity = %s",
        (elder_id, policy_key(severity, maintenance)),
    )).fetchone()
    if row is None:
        return default_policy(severity, maintenance)
    policy = parse_policy(row["policy"])
    return staff_only(policy) if maintenance else policy


async def _escalate(
    conn: AsyncConnection[Any], incident_id: uuid.UUID, alert: Alert, status: str,
) -> None:
    """A more severe alert: raise the severity and, while nobody has taken responsibility,
    replace the pending steps with the new severity's ladder starting now."""
    await conn.execute(
        "UPDATE incidents SET severity = %s WHERE id = %s", (alert.severity, incident_id)
    )
    await timeline(conn, incident_id, "escalated", severity=alert.severity)
    if status not in ("open", "notifying"):
        return
    await conn.execute(
        "UPDATE escalation_steps SET status = 'superseded', finished_at = now()"
        " WHERE incident_id = %s AND status = 'pending'", (incident_id,),
    )
    policy = await policy_for(conn, alert.elder_id, alert.severity, alert.maintenance)
    await conn.execute(
        "UPDATE incidents SET ladder = %s WHERE id = %s", (policy.model_dump_json(), incident_id)
    )
    await materialise(conn, incident_id, alert.elder_id, alert.community_id, policy)


async def _claim_alert(conn: AsyncConnection[Any], alert: Alert, incident_id: uuid.UUID) -> bool:
    cur = await conn.execute(
        "INSERT INTO incident_alerts (alert_id, incident_id, alert) VALUES (%s, %s, %s)"
        " ON CONFLICT (alert_id) DO NOTHING",
        (alert.alert_id, incident_id, alert.model_dump_json()),
    )
    return cur.rowcount == 1


async def materialise(
    conn: AsyncConnection[Any], incident_id: uuid.UUID, elder_id: str, community_id: str,
    policy: Policy,
) -> int:
    """One step row per rung, recipient and round, numbered after the incident's existing steps.
    The leading steps with no wait are due now (they run side by side: the call to contact 1
    does not wait for the staff SMS); each later step is scheduled when the one before it
    finishes."""
    contacts = await (await conn.execute(
        "SELECT priority, name, phone, can_sms, language, channels FROM contacts"
        " WHERE elder_id = %s ORDER BY priority", (elder_id,),
    )).fetchall()
    staff = await (await conn.execute(
        "SELECT id, name, phone FROM staff WHERE community_id = %s AND on_duty AND active"
        " AND phone <> '' ORDER BY id", (community_id,),
    )).fetchall()
    community = await (await conn.execute(
        "SELECT name, emergency_line FROM communities WHERE id = %s", (community_id,),
    )).fetchone()
    line = community["emergency_line"] if community else ""
    last = await (await conn.execute(
        "SELECT coalesce(max(seq), 0) AS seq FROM escalation_steps WHERE incident_id = %s",
        (incident_id,),
    )).fetchone()
    seq = int(last["seq"]) if last else 0
    first = seq + 1
    carry = 0.0  # the wait of a rung without recipients passes to the next one
    leading = True  # still in the prefix of steps without any wait
    for round_no in range(1, policy.rounds + 1):
        if round_no > 1:
            carry += policy.round_wait_s
        for rung in policy.rungs:
            carry += rung.wait_s
            for target in recipients(rung, contacts, staff, line):
                seq += 1
                leading = leading and carry == 0 and round_no == 1
                await conn.execute(
                    "INSERT INTO escalation_steps (incident_id, seq, round, action, target,"
                    " wait_s, due_at) VALUES (%s, %s, %s, %s, %s, %s,"
                    " CASE WHEN %s THEN now() + make_interval(secs => %s) END)",
                    (incident_id, seq, round_no, rung.action,
                     json.dumps(target, ensure_ascii=False), carry, seq == first or leading,
                     carry),
                )
                carry = 0.0
    if seq >= first:
        await conn.execute("SELECT pg_notify('escalation_due', %s)", (str(incident_id),))
    return seq - first + 1


def recipients(
    rung: Rung, contacts: list[dict[str, Any]], staff: list[dict[str, Any]], emergency_line: str,
) -> list[dict[str, Any]]:
    """Who one rung reaches. SMS only to numbers that can receive it (landlines are called)."""
    if rung.target == "console":
        return [{"kind": "console", "name": "console", "phone": ""}] \
            if rung.action == "console" else []
    if rung.target == "staff":
        people = [{"kind": "staff", "name": s["name"], "phone": s["phone"],
                   "language": "zh-Hans", "sms": can_receive_sms(s["phone"])} for s in staff]
    elif rung.target == "emergency_line":
        people = [{"kind": "emergency_line", "name": "emergency_line", "phone": emergency_line,
                   "language": "zh-Hans", "sms": False}] if emergency_line else []
    else:
        chosen = contacts
        if rung.target != "contacts":
            try:
                n = int(rung.target.split(":", 1)[1])
            except (IndexError, ValueError):
                log.warning("unknown ladder target; rung skipped", target=rung.target)
                return []
            chosen = [c for c in contacts if c["priority"] == n]
        people = [{"kind": "contact", "priority": c["priority"], "name": c["name"],
                   "phone": c["phone"], "language": c["language"],
                   "voice": "voice" in (c.get("channels") or ["voice"]),
                   "sms": c["can_sms"] and "sms" in (c.get("channels") or ["sms"])
                   and can_receive_sms(c["phone"])} for c in chosen]
    able = "sms" if rung.action == "sms" else "voice"
    return [{k: v for k, v in p.items() if k not in ("sms", "voice")}
            for p in people if p.get(able, True)]
