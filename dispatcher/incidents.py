"""Alerts become incidents. Alerts of the same elder and kind join the open incident; a more
severe alert escalates it. Everything happens in the caller's transaction, so an alert that is
seen twice (Kafka redelivery) changes nothing the second time."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from detectors.alerts import Alert, Severity
from dispatcher.ladder import Rung, ladder_for

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
    """Open or join an incident for `alert`; None if this alert was already recorded."""
    open_row = await (await conn.execute(
        "SELECT id, severity FROM incidents WHERE elder_id = %s AND kind = %s"
        " AND status <> 'resolved' AND opened_at > now() - %s ORDER BY opened_at DESC LIMIT 1"
        " FOR UPDATE",
        (alert.elder_id, alert.kind, JOIN_WINDOW),
    )).fetchone()
    if open_row is not None:
        incident_id: uuid.UUID = open_row["id"]
        if not await _claim_alert(conn, alert, incident_id):
            return None
        await timeline(conn, incident_id, "alert_joined", alert_id=alert.alert_id)
        if alert.severity.rank > Severity(open_row["severity"]).rank:
            await conn.execute(
                "UPDATE incidents SET severity = %s WHERE id = %s", (alert.severity, incident_id)
            )
            await timeline(conn, incident_id, "escalated", severity=alert.severity)
        return incident_id

    incident_id = uuid.uuid4()
    ladder = ladder_for(alert.severity, alert.maintenance)
    await conn.execute(
        "INSERT INTO incidents (id, elder_id, community_id, kind, severity, status, event_time,"
        " ladder) VALUES (%s, %s, %s, %s, %s, 'notifying', %s, %s)",
        (incident_id, alert.elder_id, alert.community_id, alert.kind, alert.severity,
         alert.event_time, json.dumps([r.model_dump() for r in ladder])),
    )
    if not await _claim_alert(conn, alert, incident_id):
        raise RuntimeError("alert recorded concurrently")  # rolls the new incident back
    await timeline(conn, incident_id, "incident_opened", kind=alert.kind, severity=alert.severity,
                   alert_id=alert.alert_id, device_id=alert.device_id, room=alert.room)
    await _materialise(conn, incident_id, alert.elder_id, alert.community_id, ladder)
    await conn.execute("SELECT pg_notify('escalation_due', %s)", (str(incident_id),))
    return incident_id


async def _claim_alert(conn: AsyncConnection[Any], alert: Alert, incident_id: uuid.UUID) -> bool:
    cur = await conn.execute(
        "INSERT INTO incident_alerts (alert_id, incident_id, alert) VALUES (%s, %s, %s)"
        " ON CONFLICT (alert_id) DO NOTHING",
        (alert.alert_id, incident_id, alert.model_dump_json()),
    )
    return cur.rowcount == 1


async def _materialise(
    conn: AsyncConnection[Any], incident_id: uuid.UUID, elder_id: str, community_id: str,
    ladder: list[Rung],
) -> None:
    """One pending step row per rung and recipient, each with its own due time."""
    contacts = await (await conn.execute(
        "SELECT priority, name, phone, can_sms, language FROM contacts WHERE elder_id = %s"
        " ORDER BY priority", (elder_id,),
    )).fetchall()
    staff = await (await conn.execute(
        "SELECT id, name, phone FROM staff WHERE community_id = %s AND on_duty AND phone <> ''"
        " ORDER BY id", (community_id,),
    )).fetchall()
    seq = 0
    for rung in ladder:
        for target in _recipients(rung, contacts, staff):
            seq += 1
            await conn.execute(
                "INSERT INTO escalation_steps (incident_id, seq, action, target, due_at)"
                " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))",
                (incident_id, seq, rung.action, json.dumps(target, ensure_ascii=False),
                 rung.after_s),
            )


def _recipients(
    rung: Rung, contacts: list[dict[str, Any]], staff: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    if rung.target == "console":
        return [{"kind": "console"}]
    if rung.target == "staff":
        return [{"kind": "staff", "name": s["name"], "phone": s["phone"], "language": "zh-Hans"}
                for s in staff]
    if rung.target == "contacts":
        chosen = contacts
    else:
        n = int(rung.target.split(":", 1)[1])
        chosen = [c for c in contacts if c["priority"] == n]
    if rung.action == "sms":  # landlines are called, never texted
        chosen = [c for c in chosen if c["can_sms"]]
    return [{"kind": "contact", "priority": c["priority"], "name": c["name"], "phone": c["phone"],
             "language": c["language"]} for c in chosen]
