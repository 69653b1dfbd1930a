"""Someone takes responsibility for an incident, or closes it.

open -> notifying -> acknowledged (who, how, when) -> resolved (outcome, notes). An
acknowledgement on any channel (console, keypress, SMS reply) stops every pending step on every
channel in the same transaction, and schedules a reminder to whoever took it and the duty lead
if the incident is still not resolved `Rules.ack_reminder_s` later. Resolving cancels whatever is
left and texts the outcome to every contact who was told of the emergency, in their language.
A step locks the incident row while it records its notification
(dispatcher/steps.py): a request recorded before the acknowledgement is already on its way to
Twilio; no step starts after it."""

from __future__ import annotations

import json
import re
import uuid
from enum import StrEnum
from typing import Any, Literal

from psycopg import AsyncConnection

from dispatcher.incidents import materialise, rules_for, timeline
from dispatcher.ladder import Policy, Rung
from dispatcher.phones import can_receive_sms

Via = Literal["console", "voice_keypress", "sms_reply", "api", "family_page"]


class Outcome(StrEnum):
    HELP_SENT = "help_sent"
    FALSE_ALARM = "false_alarm"
    TRANSFERRED_120_119 = "transferred_120_119"
    ELDER_FINE = "elder_fine"


_TRAILING_PHONE = re.compile(r"\((\+?\d{5,16})\)\s*$")


async def acknowledge(
    conn: AsyncConnection[Any], incident_id: uuid.UUID | str, who: str, via: Via,
    phone: str | None = None, **detail: Any,
) -> bool:
    """Record who took responsibility and cancel every pending step; False if the incident was
    not open (already acknowledged, resolved or unknown). Commits nothing: the caller's
    transaction (or autocommit-off connection) decides.

    `phone` is where the acknowledger is reached later (a repeated press, the reminder); when
    not given it is the number the keypress call went to (`notification_id`), the staff
    member's phone (`by` = a staff id or a console login linked to one), or a trailing
    "(+86...)" in `who`."""
    phone = phone or await _phone_of(conn, who, detail)
    row = await (await conn.execute(
        "UPDATE incidents SET status = 'acknowledged', acknowledged_at = now(),"
        " acknowledged_by = %s, acknowledged_via = %s, acknowledged_phone = %s"
        " WHERE id = %s AND status IN ('open', 'notifying')"
        " RETURNING elder_id, community_id",
        (who, via, phone, str(incident_id)),
    )).fetchone()
    if row is None:
        return False
    stopped = await _cancel_pending(conn, incident_id)
    await timeline(conn, incident_id, "acknowledged", who=who, via=via,
                   steps_cancelled=stopped, **detail)
    rules = await rules_for(conn, row["community_id"])
    reminder = Policy(rungs=[
        Rung(action="sms", target="acknowledger", wait_s=rules.ack_reminder_s),
        Rung(action="sms", target="duty_lead"),
    ])
    await materialise(conn, incident_id, row["elder_id"], row["community_id"], reminder,
                      purpose="reminder")
    return True


async def _phone_of(conn: AsyncConnection[Any], who: str, detail: dict[str, Any]) -> str | None:
    if detail.get("notification_id") is not None:
        n = await (await conn.execute(
            "SELECT to_number FROM notifications WHERE id = %s", (detail["notification_id"],),
        )).fetchone()
        if n is not None:
            return str(n["to_number"])
    if detail.get("by"):  # a staff id, or a console login linked to one
        s = await (await conn.execute(
            "SELECT s.phone FROM staff s WHERE s.phone <> '' AND (s.id = %(by)s OR s.id ="
            " (SELECT staff_id FROM staff_accounts WHERE username = %(by)s)) LIMIT 1",
            {"by": detail["by"]},
        )).fetchone()
        if s is not None:
            return str(s["phone"])
    match = _TRAILING_PHONE.search(who)
    return match.group(1) if match else None


async def resolve(
    conn: AsyncConnection[Any], incident_id: uuid.UUID | str, outcome: Outcome | str,
    notes: str = "", who: str = "",
) -> bool:
    """Close the incident with an outcome; False if it was already resolved or unknown.
    Raises ValueError for an outcome that is not one of `Outcome`."""
    outcome = Outcome(outcome)
    cur = await conn.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = now(), outcome = %s,"
        " notes = %s WHERE id = %s AND status <> 'resolved'",
        (outcome.value, notes, str(incident_id)),
    )
    if cur.rowcount == 0:
        return False
    await _cancel_pending(conn, incident_id)
    texted = await _tell_outcome(conn, incident_id, outcome, who)
    await timeline(conn, incident_id, "resolved", outcome=outcome.value, notes=notes, who=who,
                   outcome_sms=texted)
    return True


_TOLD = """
SELECT DISTINCT ON (c.phone) c.name, c.phone, c.language, i.acknowledged_by
FROM notifications n
JOIN escalation_steps s ON s.id = n.step_id
JOIN incidents i ON i.id = n.incident_id
JOIN contacts c ON c.elder_id = i.elder_id AND c.phone = n.to_number
WHERE n.incident_id = %s AND s.purpose = 'ladder' AND s.target->>'kind' = 'contact'
  AND n.status IN ('sent', 'dry_run', 'unknown') AND c.can_sms AND 'sms' = ANY(c.channels)
ORDER BY c.phone, c.priority
"""


async def _tell_outcome(
    conn: AsyncConnection[Any], incident_id: uuid.UUID | str, outcome: Outcome, who: str,
) -> int:
    """One outcome SMS step, due now, per contact who was called or texted about it."""
    told = [r for r in await (await conn.execute(_TOLD, (str(incident_id),))).fetchall()
            if can_receive_sms(r["phone"])]
    if not told:
        return 0
    last = await (await conn.execute(
        "SELECT coalesce(max(seq), 0) AS seq FROM escalation_steps WHERE incident_id = %s",
        (str(incident_id),),
    )).fetchone()
    seq = int(last["seq"]) if last else 0
    for r in told:
        seq += 1
        target = {"kind": "contact", "name": r["name"], "phone": r["phone"],
                  "language": r["language"], "outcome": outcome.value,
                  "who": who or r["acknowledged_by"] or ""}
        await conn.execute(
            "INSERT INTO escalation_steps (incident_id, seq, round, action, target, wait_s,"
            " purpose, due_at) VALUES (%s, %s, 1, 'sms', %s, 0, 'outcome', now())",
            (str(incident_id), seq, json.dumps(target, ensure_ascii=False)),
        )
    await conn.execute("SELECT pg_notify('escalation_due', %s)", (str(incident_id),))
    return len(told)


async def _cancel_pending(conn: AsyncConnection[Any], incident_id: uuid.UUID | str) -> int:
    cur = await conn.execute(
        "UPDATE escalation_steps SET status = 'cancelled', finished_at = now()"
        " WHERE incident_id = %s AND status = 'pending'", (str(incident_id),),
    )
    return cur.rowcount
