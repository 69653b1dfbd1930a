"""Steps left "running" by a dispatcher that died (its advisory lock is free), recovered by any
other worker: with no notification row, or one waiting for a retry, a step runs again; with a
notification row still "sending" (the process died during the Twilio request) it is marked
unknown and never repeated silently (see `dispatcher.steps`)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from dispatcher.incidents import timeline
from dispatcher.metrics import NOTIFICATIONS
from dispatcher.progress import schedule_next
from foundation import db, logs

log = logs.get(__name__)


async def recover(pool: db.Pool, own_lock: int) -> int:
    """Steps left running by dead dispatcher processes (every worker lock but `own_lock` that is
    free): resume or settle them."""
    recovered = 0
    async with pool.connection() as conn:
        locks = [r["worker_lock"] for r in await (await conn.execute(
            "SELECT DISTINCT worker_lock FROM escalation_steps WHERE status = 'running'"
            " AND worker_lock IS NOT NULL AND worker_lock <> %s", (own_lock,),
        )).fetchall()]
        dead = []
        for key in locks:
            row = await (await conn.execute(
                "SELECT pg_try_advisory_lock(%s) AS free", (key,)
            )).fetchone()
            if row and row["free"]:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                dead.append(key)
        await conn.commit()
        for key in dead:
            recovered += await recover_steps(conn, key)
            await conn.commit()
    return recovered

async def recover_steps(conn: AsyncConnection[Any], key: int, step_id: int | None = None,
                        give_up: bool = False) -> int:
    """Resume or settle the running steps of worker `key` (one step if `step_id`)."""
    steps = await (await conn.execute(
        "SELECT id, incident_id, seq, round, action FROM escalation_steps"
        " WHERE status = 'running' AND worker_lock = %s AND (%s::bigint IS NULL OR id = %s)"
        " FOR UPDATE SKIP LOCKED", (key, step_id, step_id),
    )).fetchall()
    for s in steps:
        n = await (await conn.execute(
            "SELECT id, status, attempts FROM notifications WHERE idempotency_key = %s"
            " FOR UPDATE", (f"step:{s['id']}",),
        )).fetchone()
        if give_up and (n is None or n["status"] != "sending"):
            await conn.execute(
                "UPDATE escalation_steps SET status = 'failed', result = 'crashed',"
                " finished_at = now() WHERE id = %s", (s["id"],),
            )
            await timeline(conn, s["incident_id"], "step_failed", step=s["id"],
                           action=s["action"])
            await schedule_next(conn, s["incident_id"], s["seq"], s["round"])
        elif n is None or n["status"] == "retrying" or (
                n["status"] == "sending" and n["attempts"] == 0):
            # Nothing reached Twilio: run it again.
            await conn.execute(
                "UPDATE escalation_steps SET status = 'pending', due_at = now(),"
                " claimed_by = NULL, worker_lock = NULL WHERE id = %s", (s["id"],),
            )
            await timeline(conn, s["incident_id"], "step_resumed", step=s["id"],
                           action=s["action"])
        else:
            await settle_unknown(conn, s["id"], s["incident_id"], n, s["action"] == "call")
            result = "unknown" if n["status"] == "sending" else "done"
            await conn.execute(
                "UPDATE escalation_steps SET status = %s, result = %s, finished_at = now()"
                " WHERE id = %s", (result, result, s["id"]),
            )
            await schedule_next(conn, s["incident_id"], s["seq"], s["round"])
        log.warning("step of a dead dispatcher recovered", step=s["id"])
    if steps:
        await conn.execute("SELECT pg_notify('escalation_due', 'recovered')")
    return len(steps)


async def settle_unknown(
    conn: AsyncConnection[Any], step_id: int, incident_id: Any, notification: dict[str, Any],
    voice: bool,
) -> None:
    """A notification still "sending" whose sender is gone: mark it unknown for staff."""
    if notification["status"] != "sending":
        return
    await conn.execute(
        "UPDATE notifications SET status = 'unknown', error = 'outcome unknown: the dispatcher"
        " stopped during the Twilio request; not repeated', updated_at = now() WHERE id = %s",
        (notification["id"],),
    )
    await timeline(conn, incident_id, "outcome_unknown", step=step_id,
                   notification_id=notification["id"], channel="voice" if voice else "sms")
    NOTIFICATIONS.labels("voice" if voice else "sms", "unknown").inc()
