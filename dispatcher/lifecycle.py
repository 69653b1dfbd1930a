"""Someone takes responsibility for an incident, or closes it.

open -> notifying -> acknowledged (who, how, when) -> resolved (outcome, notes). An
acknowledgement on any channel (console, keypress, SMS reply) stops every pending step on every
channel in the same transaction. A step locks the incident row while it records its notification
(dispatcher/steps.py): a request recorded before the acknowledgement is already on its way to
Twilio; no step starts after it."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, Literal

from psycopg import AsyncConnection

from dispatcher.incidents import timeline

Via = Literal["console", "voice_keypress", "sms_reply", "api", "family_page"]


class Outcome(StrEnum):
    HELP_SENT = "help_sent"
    FALSE_ALARM = "false_alarm"
    TRANSFERRED_120_119 = "transferred_120_119"
    ELDER_FINE = "elder_fine"


async def acknowledge(
    conn: AsyncConnection[Any], incident_id: uuid.UUID | str, who: str, via: Via,
    **detail: Any,
) -> bool:
    """Record who took responsibility and cancel every pending step; False if the incident was
    not open (already acknowledged, resolved or unknown). Commits nothing: the caller's
    transaction (or autocommit-off connection) decides."""
    cur = await conn.execute(
        "UPDATE incidents SET status = 'acknowledged', acknowledged_at = now(),"
        " acknowledged_by = %s, acknowledged_via = %s"
        " WHERE id = %s AND status IN ('open', 'notifying')",
        (who, via, str(incident_id)),
    )
    if cur.rowcount == 0:
        return False
    stopped = await _cancel_pending(conn, incident_id)
    await timeline(conn, incident_id, "acknowledged", who=who, via=via,
                   steps_cancelled=stopped, **detail)
    return True


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
    await timeline(conn, incident_id, "resolved", outcome=outcome.value, notes=notes, who=who)
    return True


async def _cancel_pending(conn: AsyncConnection[Any], incident_id: uuid.UUID | str) -> int:
    cur = await conn.execute(
        "UPDATE escalation_steps SET status = 'cancelled', finished_at = now()"
        " WHERE incident_id = %s AND status = 'pending'", (str(incident_id),),
    )
    return cur.rowcount
