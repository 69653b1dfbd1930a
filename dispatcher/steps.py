"""Executing escalation steps. A due step is claimed with FOR UPDATE SKIP LOCKED and its
notification row (idempotency key = the step) is written and committed before Twilio is asked,
so several dispatchers can run and none sends the same step twice."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from dispatcher.channels import Channel
from dispatcher.incidents import timeline
from dispatcher.messages import IncidentFacts, family_sms, staff_sms, voice_twiml
from eldercare import db, logs

log = logs.get(__name__)

WORKER_ID = f"{socket.gethostname()}:{id(object())}"

_CLAIM = """
UPDATE escalation_steps s SET status = 'running', claimed_by = %(worker)s, claimed_at = now(),
       attempts = attempts + 1
WHERE s.id = (
    SELECT id FROM escalation_steps
    WHERE status = 'pending' AND due_at <= now()
    ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING s.id, s.incident_id, s.seq, s.action, s.target
"""

_FACTS = """
SELECT e.name AS elder, e.address, c.name AS community, i.kind, i.event_time, i.status
FROM incidents i JOIN elders e ON e.id = i.elder_id JOIN communities c ON c.id = i.community_id
WHERE i.id = %s
"""


@dataclass(frozen=True)
class Step:
    id: int
    incident_id: Any
    seq: int
    action: str
    target: dict[str, Any]


class StepRunner:
    def __init__(self, pool: db.Pool, channel: Channel, public_base_url: str) -> None:
        self.pool = pool
        self.channel = channel
        self.base = public_base_url.rstrip("/")

    async def run_due(self) -> int:
        """Execute every step that is due now; returns how many ran."""
        ran = 0
        while (step := await self._claim()) is not None:
            await self._execute(step)
            ran += 1
        return ran

    async def _claim(self) -> Step | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(_CLAIM, {"worker": WORKER_ID})).fetchone()
            return Step(**row) if row else None

    async def _execute(self, step: Step) -> None:
        async with self.pool.connection() as conn:
            facts_row = await (await conn.execute(_FACTS, (step.incident_id,))).fetchone()
            assert facts_row is not None
            if facts_row["status"] in ("acknowledged", "resolved") or step.action == "console":
                await conn.execute(
                    "UPDATE escalation_steps SET status = %s, finished_at = now() WHERE id = %s",
                    ("done" if step.action == "console" else "cancelled", step.id),
                )
                return
            facts = IncidentFacts(
                facts_row["elder"], facts_row["address"], facts_row["community"],
                facts_row["kind"], facts_row["event_time"],
            )
            lang = step.target.get("language", "zh-Hans")
            channel = "voice" if step.action == "call" else "sms"
            if step.action == "call":
                body = voice_twiml(facts, f"{self.base}/twilio/voice/gather?incident="
                                   f"{step.incident_id}", lang)
            elif step.action == "staff_sms":
                body = staff_sms(facts, lang)
            else:
                body = family_sms(facts, lang)
            # Recorded and committed before Twilio is asked: a second claim of this step fails
            # on the idempotency key instead of sending again.
            cur = await conn.execute(
                "INSERT INTO notifications (idempotency_key, incident_id, step_id, channel,"
                " to_number, recipient, body, dry_run) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                (f"step:{step.id}", step.incident_id, step.id, channel, step.target["phone"],
                 step.target["name"], body, self.channel.dry_run),
            )
            notification = await cur.fetchone()
            await conn.commit()
            if notification is None:
                log.warning("step already sent; not repeating", step=step.id)
                return
            callback = f"{self.base}/twilio/status?notification={notification['id']}"
            try:
                if step.action == "call":
                    sid = await self.channel.call(step.target["phone"], body, callback)
                else:
                    sid = await self.channel.sms(step.target["phone"], body, callback)
                status, error = ("dry_run" if self.channel.dry_run else "sent"), None
            except Exception as exc:  # Twilio said no: record it, the ladder moves on
                log.exception("notification failed", step=step.id)
                sid, status, error = None, "failed", str(exc)
            await conn.execute(
                "UPDATE notifications SET status = %s, provider_sid = %s, error = %s,"
                " updated_at = now() WHERE id = %s", (status, sid, error, notification["id"]),
            )
            await conn.execute(
                "UPDATE escalation_steps SET status = %s, finished_at = now() WHERE id = %s",
                ("failed" if error else "done", step.id),
            )
            await timeline(
                conn, step.incident_id, "call" if channel == "voice" else "sms",
                name=step.target["name"], phone=step.target["phone"], status=status,
                notification_id=notification["id"], dry_run=self.channel.dry_run, error=error,
            )
            await conn.commit()
            log.info("notification", incident_id=str(step.incident_id), channel=channel,
                     to=step.target["phone"], status=status)
