"""People who answer during a scenario: a contact who replies "1" to the alert SMS, staff who
resolve the incident. They act on the elder's open incident through the dispatcher's own
lifecycle (`dispatcher.lifecycle`), as the SMS webhook and the console do, so rules that depend
on an acknowledgement or a resolution (a press after acknowledgement re-alerts, a press after
resolution opens a new incident, the outcome SMS) can be replayed by testers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dispatcher import lifecycle
from simulators.timeline import Step

# How long a responder waits for something to answer (the ladder texts the family 15 s in).
WAIT_S = 60.0


async def _open_incident(conn: psycopg.AsyncConnection[Any], elder_id: str,
                         texted: str | None) -> str | None:
    """The elder's open incident once there is something to answer: the alert SMS to `texted`
    (a contact replies to the SMS they got), or else the incident's first notification with
    nothing due or running (staff close what they have seen go out). So a scenario's counts do
    not depend on a race with the ladder."""
    row = await (await conn.execute(
        "SELECT i.id FROM incidents i WHERE i.elder_id = %(elder)s AND i.status <> 'resolved'"
        " AND NOT i.maintenance AND i.first_notified_at IS NOT NULL AND CASE"
        " WHEN %(phone)s::text IS NOT NULL THEN EXISTS (SELECT 1 FROM notifications n"
        "  WHERE n.incident_id = i.id AND n.to_number = %(phone)s AND n.channel = 'sms')"
        " ELSE NOT EXISTS (SELECT 1 FROM escalation_steps s WHERE s.incident_id = i.id AND"
        "  (s.status = 'running' OR (s.status = 'pending' AND s.due_at <= now()))) END"
        " ORDER BY i.opened_at DESC LIMIT 1", {"elder": elder_id, "phone": texted})).fetchone()
    return str(row["id"]) if row else None


async def respond(database_url: str, step: Step) -> None:
    """Do what the step says on the elder's open incident once there is something to answer
    (`_open_incident`); gives up after `WAIT_S` (the scenario's expectations then fail on
    their own)."""
    what: dict[str, Any] = step.body
    deadline = time.monotonic() + WAIT_S
    async with await psycopg.AsyncConnection.connect(
            database_url, row_factory=dict_row, autocommit=True) as conn:
        phone = what.get("phone")
        while (incident := await _open_incident(conn, what["elder_id"], phone)) is None:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.1)
        async with conn.transaction():
            if what["do"] == "acknowledge":
                await lifecycle.acknowledge(conn, incident, f"{what['name']} ({phone})",
                                            "sms_reply", phone=phone, body="1")
            else:
                await lifecycle.resolve(conn, incident, what.get("outcome", "elder_fine"),
                                        "scenario", who=what.get("name", "值班员"))
