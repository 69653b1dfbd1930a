"""How an incident's ladder moves on after a step: the next step comes due after its wait, a
ladder with nothing left raises `ladder_exhausted`, and a ladder whose every channel failed
raises `all_channels_failed` on the console."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from dispatcher.incidents import timeline
from foundation import logs

log = logs.get(__name__)

# The incident statuses in which a step of each purpose still makes sense; otherwise it is
# cancelled when it comes due. The ladder stops once someone takes responsibility; a re-alert
# and a reminder only concern an incident someone holds; the outcome is told after resolution.
RUNS_WHILE: dict[str, tuple[str, ...]] = {
    "ladder": ("open", "notifying"),
    "realert": ("acknowledged",),
    "reminder": ("acknowledged",),
    "outcome": ("resolved",),
}


async def schedule_next(
    conn: AsyncConnection[Any], incident_id: Any, seq: int, round_no: int,
) -> None:
    """The wait after a step is the next step's due time; a ladder with nothing left and nobody
    responsible raises `ladder_exhausted` on the console."""
    row = await (await conn.execute(
        "UPDATE escalation_steps SET due_at = now() + make_interval(secs => wait_s)"
        " WHERE incident_id = %(i)s AND status = 'pending' AND due_at IS NULL AND seq ="
        " (SELECT min(seq) FROM escalation_steps WHERE incident_id = %(i)s AND seq > %(s)s)"
        " RETURNING round, wait_s",
        {"i": incident_id, "s": seq},
    )).fetchone()
    if row is not None:
        if row["round"] > round_no:
            await timeline(conn, incident_id, "ladder_repeats", round=row["round"],
                           after_s=row["wait_s"])
        await conn.execute("SELECT pg_notify('escalation_due', %s)", (str(incident_id),))
        return
    left = await (await conn.execute(
        "SELECT 1 FROM escalation_steps WHERE incident_id = %s AND status IN ('pending', 'running')"
        " AND seq <> %s LIMIT 1", (incident_id, seq),
    )).fetchone()
    if left is not None:
        return
    exhausted = await (await conn.execute(
        "SELECT 1 FROM incidents i WHERE id = %s AND status IN ('open', 'notifying')"
        " AND NOT EXISTS (SELECT 1 FROM incident_timeline t WHERE t.incident_id = i.id"
        " AND t.kind = 'ladder_exhausted')", (incident_id,),
    )).fetchone()
    if exhausted is not None:
        await timeline(conn, incident_id, "ladder_exhausted", rounds=round_no)


async def alarm_if_all_channels_failed(conn: AsyncConnection[Any], incident_id: Any) -> None:
    """Nothing reached anyone and every channel of the ladder failed: alarm the console once."""
    row = await (await conn.execute(
        "SELECT"
        " (SELECT count(*) FROM notifications WHERE incident_id = %(i)s"
        "   AND status IN ('sent', 'dry_run')"
        "   AND coalesce(provider_status, '') NOT IN ('failed', 'undelivered')) AS ok,"
        " (SELECT count(DISTINCT channel) FROM notifications WHERE incident_id = %(i)s"
        "   AND (status = 'failed' OR provider_status IN ('failed', 'undelivered'))) AS failed,"
        " (SELECT count(DISTINCT action) FROM escalation_steps WHERE incident_id = %(i)s"
        "   AND action IN ('call', 'sms')) AS channels,"
        " EXISTS (SELECT 1 FROM incident_timeline WHERE incident_id = %(i)s"
        "   AND kind = 'all_channels_failed') AS raised",
        {"i": incident_id},
    )).fetchone()
    if row and not row["raised"] and row["ok"] == 0 and row["failed"] >= row["channels"] > 0:
        await timeline(conn, incident_id, "all_channels_failed")
        log.error("all channels failed", incident_id=str(incident_id))
