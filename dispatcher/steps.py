"""Executing escalation steps, durably.

A due step is claimed with FOR UPDATE SKIP LOCKED by a worker that holds its own PostgreSQL
advisory lock for as long as its process lives. Before Twilio is asked, the step's notification
row (idempotency key = the step) is written and committed, so several dispatchers can run and
none sends the same step twice.

After a request:
- accepted: the step is done and the next step is scheduled (now + its wait);
- 429/5xx or no connection (nothing was created): the step goes back to pending with a backoff
  (`dispatcher_retry_attempts` requests in all), then fails and the ladder moves on;
- outcome unknown (timeout after sending): an SMS is retried (a duplicate text is harmless); a
  call is NOT repeated: it is marked "unknown" on the timeline for staff and the ladder moves on.

A step left "running" by a dead worker (its advisory lock is free) is recovered by any other
worker: with no notification row, or one waiting for a retry, it runs again; with a notification
row still "sending" (the process died during the Twilio request) it is marked unknown exactly as
above and never repeated silently (`dispatcher.recovery`). A status callback later fills in what
really happened. How the ladder moves on after a step is `dispatcher.progress`."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from dispatcher import claims, family, recovery
from dispatcher.channels import Channel, failure_kind
from dispatcher.incidents import timeline
from dispatcher.messages import (
    IncidentFacts,
    family_sms,
    outcome_sms,
    realert_sms,
    reminder_sms,
    staff_sms,
    voice_twiml,
)
from dispatcher.metrics import NOTIFICATIONS, STEP_LATENCY
from dispatcher.progress import RUNS_WHILE, alarm_if_all_channels_failed, schedule_next
from dispatcher.recovery import Reconciling, settle_unknown
from dispatcher.whereabouts import PLACE, place_params, place_words
from foundation import db, faults, logs

log = logs.get(__name__)

_FACTS = """
SELECT e.name AS elder, e.address, c.name AS community, c.time_zone, i.kind, i.event_time,
       i.status, i.acknowledged_by, i.acknowledged_at, i.resolved_at, now() AS now
FROM incidents i JOIN elders e ON e.id = i.elder_id JOIN communities c ON c.id = i.community_id
WHERE i.id = %s FOR NO KEY UPDATE OF i
"""

# Statuses of a notification that mean "reached Twilio (or would have, in a dry run)".
ACCEPTED = ("sent", "dry_run")
CALL_NOT_ANSWERED = frozenset({"no-answer", "busy", "failed", "canceled"})


@dataclass(frozen=True)
class Step:
    id: int
    incident_id: Any
    seq: int
    round: int
    action: str
    target: dict[str, Any]
    due_at: datetime
    attempts: int = 1
    purpose: str = "ladder"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with +-20 % jitter, so retries of many steps do not align."""
        return float(self.backoff_s * 2 ** max(attempt - 1, 0) * random.uniform(0.8, 1.2))


def new_worker_lock() -> int:
    """A random advisory-lock key (positive bigint) naming one dispatcher process."""
    return random.getrandbits(62) + 1


class StepRunner:
    """Claims and executes due steps for one dispatcher process (`worker_lock` must be held by
    that process on a connection that lives as long as it does).

    A claimed step runs in a task of its own, so a slow Twilio answer holds one of `requests`
    slots, never the claimer: under a backlog every due step is claimed and its request sent at
    once, up to `requests` in flight. Earlier rungs are claimed first (round, then the step's
    place in its ladder), so a new incident's first call and staff alert never queue behind
    the SMS or later rungs of other incidents; within a round calls come first, so the first
    call does not wait for the incident's console entry and staff SMS prepared beside it (they
    take turns on the incident's row)."""

    def __init__(self, pool: db.Pool, channel: Channel, public_base_url: str, worker_lock: int,
                 retry: RetryPolicy | None = None, family_base_url: str = "",
                 link_secret: str = "", requests: int = 64,
                 reconciling: Reconciling | None = None) -> None:
        self.pool = pool
        self.channel = channel
        self.base = public_base_url.rstrip("/")
        self.family_base = (family_base_url or public_base_url).rstrip("/")
        self.link_secret = link_secret
        self.lock = worker_lock
        self.worker = f"{socket.gethostname()}:{worker_lock}"
        self.retry = retry or RetryPolicy()
        self.reconciling = reconciling or Reconciling(timeout_s=self.retry.timeout_s)
        # Called after each claim: another worker may take the next due step meanwhile.
        self.on_claim: Callable[[], None] = lambda: None
        # Called after each step: a retry it rescheduled is announced to no one else.
        self.on_done: Callable[[], None] = lambda: None
        self.slots = asyncio.Semaphore(max(1, requests))
        self.in_flight: set[asyncio.Task[None]] = set()
        self._unknowns: asyncio.Task[None] | None = None

    async def run_due(self) -> int:
        """Claim every step that is due now, each run in a task of its own (at most `requests`
        at once: the claim waits for a free slot, so nothing is claimed that cannot start);
        returns how many were claimed."""
        ran = 0
        while True:
            step = await self._claim_in_slot()
            if step is None:
                return ran
            self.on_claim()
            self._start(step)
            ran += 1

    def first_step(self) -> claims.FirstStep | None:
        """A claim of a new incident's first step in its own transaction (`record_alert`),
        for `start_claimed` after the commit; None when no request slot is free (the workers
        take the step as usual)."""
        return None if self.slots.locked() else claims.FirstStep(self.worker, self.lock)

    async def start_claimed(self, first: claims.FirstStep) -> bool:
        """Start the step `first` claimed (committed) at once, as `start_first` does; False if
        it claimed none."""
        if first.step is None:
            return False
        await self.slots.acquire()  # free when `first_step` was asked, unless taken meanwhile
        self._start(Step(**first.step), on_prepared=self.on_claim)
        return True

    async def start_first(self, incident_id: Any) -> bool:
        """Claim the step a new incident starts with (its first call: calls come first) and
        start it at once, without the round trip through a resting worker; the workers are
        woken (`on_claim`) once its notification row is committed, so the incident's other
        steps do not compete with it until then. False (nothing claimed) when no step of the
        incident is due or no request slot is free: the workers take it as usual."""
        if self.slots.locked():
            return False
        step = await self._claim_in_slot(incident_id)
        if step is None:
            return False
        self._start(step, on_prepared=self.on_claim)
        return True

    async def _claim_in_slot(self, incident_id: Any = None) -> Step | None:
        """`_claim` holding a request slot, which the claimed step keeps (released by
        `_run_in_slot`); no step, no slot held."""
        await self.slots.acquire()
        try:
            step = await self._claim(incident_id)
        except BaseException:
            self.slots.release()
            raise
        if step is None:
            self.slots.release()
        return step

    def _start(self, step: Step, on_prepared: Callable[[], None] | None = None) -> None:
        task = asyncio.create_task(self._run_in_slot(step, on_prepared))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _run_in_slot(self, step: Step, on_prepared: Callable[[], None] | None = None
                           ) -> None:
        try:
            await self.run_claimed(step, on_prepared)
        except Exception:  # e.g. the database lost while recovering: the step stays
            # "running" under this process's lock, recovered by another once it has exited
            log.exception("step not settled", step=step.id)
        finally:
            self.slots.release()
            self.on_done()

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout`) for the steps in flight, e.g. before the pool closes."""
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=timeout)

    async def run_claimed(self, step: Step, on_prepared: Callable[[], None] | None = None
                          ) -> None:
        """Execute a step this process has claimed (`on_prepared`: called once everything
        before the Twilio request is committed)."""
        try:
            await self._execute(step, on_prepared)
        except Exception:  # a bug must not stop the ladder of every other incident
            log.exception("step crashed", step=step.id)
            async with self.pool.connection() as conn:
                _, questions = await recovery.recover_steps(conn, self.lock, self.lock, step.id,
                                                            give_up=step.attempts >= 5)
                await conn.commit()
            for q in questions:  # the request may or may not have gone out: ask
                await recovery.reconcile(self.pool, self.channel, q, self.lock,
                                         self.reconciling)

    async def seconds_until_next(self, cap: float) -> float:
        """Time until the next pending step is due, at most `cap`."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT extract(epoch FROM min(due_at) - now()) AS s FROM escalation_steps"
                " WHERE status = 'pending' AND due_at IS NOT NULL"
            )).fetchone()
        if row is None or row["s"] is None:
            return cap
        return max(0.0, min(cap, float(row["s"])))

    async def _claim(self, incident_id: Any = None) -> Step | None:
        """The next due step (of one incident, if given), claimed by this process."""
        async with self.pool.connection() as conn:
            # Not waited for: only the notification row's synchronous commit (`_prepare`), which
            # flushes this one too, lets anything leave the database. Lost in a crash, the step
            # is pending again, and nothing was sent.
            await conn.execute(db.COMMIT_UNFLUSHED)
            row = await (await conn.execute(
                claims.CLAIM_ANY if incident_id is None else claims.CLAIM_OF_INCIDENT,
                {"worker": self.worker, "lock": self.lock, "incident": incident_id},
            )).fetchone()
            return Step(**row) if row else None

    async def _execute(self, step: Step, on_prepared: Callable[[], None] | None = None
                       ) -> None:
        async with self.pool.connection() as conn:
            prepared = await self._prepare(conn, step)
        if on_prepared is not None:
            on_prepared()
        if prepared is None:
            return
        notification, body = prepared
        voice = step.action == "call"
        if notification.get("ask") and await self._adopted(step, notification, voice):
            return
        faults.kill_point("before_request", step.target["phone"])  # tests: the crash window
        # No database connection is held while Twilio answers.
        callback = f"{self.base}/twilio/status?step={step.id}"
        sid, error, failure = None, None, None
        try:
            async with asyncio.timeout(self.retry.timeout_s):
                if voice:
                    sid = await self.channel.call(step.target["phone"], body, callback)
                else:
                    sid = await self.channel.sms(step.target["phone"], body, callback)
        except Exception as exc:
            failure, error = failure_kind(exc), f"{type(exc).__name__}: {exc}"
            log.warning("twilio request failed", step=step.id, failure=failure, error=error)
        async with self.pool.connection() as conn:
            await self._outcome(conn, step, notification, voice, sid, failure, error)
            await conn.commit()

    async def _adopted(self, step: Step, notification: dict[str, Any], voice: bool) -> bool:
        """Before a retry: did an earlier attempt reach the provider after all (a timeout, a
        5xx from a proxy)? Then its record is adopted and nothing is sent again. If the
        provider cannot be asked, the retry goes ahead (a duplicate beats a missing one)."""
        try:
            found = await recovery.ask(self.channel, "call" if voice else "sms",
                                       step.target["phone"], notification["created_at"],
                                       self.reconciling.timeout_s)
        except Exception as exc:
            log.warning("provider not asked before a retry", step=step.id, error=str(exc))
            return False
        if not found:
            return False
        async with self.pool.connection() as conn:
            sent = await recovery.unclaimed(conn, notification["id"], step.target["phone"],
                                            notification["body"], found)
            if sent is not None:
                log.warning("an earlier attempt reached the provider: adopted", step=step.id,
                            sid=sent.sid)
                await self._outcome(conn, step, notification, voice, sent.sid, None, None)
            await conn.commit()
        return sent is not None

    async def _prepare(
        self, conn: AsyncConnection[Any], step: Step,
    ) -> tuple[dict[str, Any], str] | None:
        """Everything before the Twilio request, committed; None when nothing is to be sent."""
        # Locks the incident row until the notification is recorded: an acknowledgement
        # waits for it, and side-by-side steps of one incident take turns (no deadlock).
        place_read = None
        if step.action in ("call", "sms"):  # a message says where: read in the same trip
            async with conn.pipeline():
                facts_read = await conn.execute(_FACTS, (step.incident_id,))
                place_read = await conn.execute(PLACE, place_params(step.incident_id))
        else:
            facts_read = await conn.execute(_FACTS, (step.incident_id,))
        facts_row = await facts_read.fetchone()
        if facts_row is None or facts_row["status"] not in RUNS_WHILE.get(step.purpose, ()):
            await self._finish(conn, step, "cancelled", schedule=False)
            await conn.commit()
            return None
        if step.action in ("console", "queue"):
            if step.action == "console":
                await timeline(conn, step.incident_id, "console_alert", round=step.round,
                               purpose=step.purpose)
            else:  # a work item: on the console's queue for whoever is on shift
                await timeline(conn, step.incident_id, "work_queued",
                               staff=step.target.get("staff", []))
            await self._finish(conn, step, "done")
            await conn.commit()
            return None
        lang = step.target.get("language", "zh-Hans")
        where, spoken = place_words(await place_read.fetchone() if place_read else None, lang,
                                    facts_row["elder"], facts_row["now"])
        facts = IncidentFacts(
            facts_row["elder"], facts_row["address"], facts_row["community"],
            facts_row["kind"], facts_row["event_time"], facts_row["time_zone"], where, spoken,
        )
        link = ""
        if step.action == "sms" and step.target.get("kind") == "contact" \
                and "priority" in step.target and step.purpose == "ladder":
            secret = await family.link_secret(conn, self.link_secret)
            token = await family.issue(conn, secret, step.incident_id, step.target["priority"],
                                       step.target.get("name", ""), lang)
            link = family.url(self.family_base, token)
        body = self._render(step, facts, facts_row, link)
        channel = "voice" if step.action == "call" else "sms"
        notification = await self._record(
            conn, step, channel, body,
            notifying=facts_row["status"] == "open" and step.purpose == "ladder")
        # Committed before Twilio is asked: a second claim of this step finds the row.
        await conn.commit()
        return None if notification is None else (notification, body)

    def _render(self, step: Step, facts: IncidentFacts, row: dict[str, Any], link: str = ""
                ) -> str:
        lang = step.target.get("language", "zh-Hans")
        kind = step.target.get("kind")
        if step.action == "call":
            key = {"realert": "voice.realert"}.get(step.purpose) or (
                "voice.checkin" if kind == "elder" else "voice.alert")
            return voice_twiml(facts, f"{self.base}/twilio/voice/gather?step={step.id}", lang,
                               key)
        if step.purpose == "realert":
            return realert_sms(facts, lang)
        if step.purpose == "reminder":
            since = row["acknowledged_at"] or row["now"]
            minutes = max(1, round((row["now"] - since).total_seconds() / 60))
            return reminder_sms(facts, row["acknowledged_by"] or "", minutes, lang)
        if step.purpose == "outcome":
            return outcome_sms(facts, step.target.get("outcome", ""), step.target.get("who", ""),
                               row["resolved_at"] or row["now"], lang)
        if kind in ("staff", "duty_lead", "acknowledger"):
            return staff_sms(facts, lang)
        return family_sms(facts, lang, link)

    async def _record(
        self, conn: AsyncConnection[Any], step: Step, channel: str, body: str,
        notifying: bool = False,
    ) -> dict[str, Any] | None:
        """The step's notification row, marked "sending"; None when it must not be sent (again).
        `notifying`: the incident, still "open", becomes "notifying" (a no-op once any of its
        notifications is recorded, since that made it "notifying" in the same transaction)."""
        # The first attempt (nearly always) is one round trip: a new row, already "sending",
        # and the incident's status with it.
        async with conn.pipeline():
            inserted = await conn.execute(
                "INSERT INTO notifications (idempotency_key, incident_id, step_id, channel,"
                " to_number, recipient, body, dry_run, status, attempts)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'sending', 1)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                (f"step:{step.id}", step.incident_id, step.id, channel, step.target["phone"],
                 step.target["name"], body, self.channel.dry_run),
            )
            if notifying:
                await conn.execute(
                    "UPDATE incidents SET status = 'notifying' WHERE id = %s AND status = 'open'",
                    (step.incident_id,),
                )
        fresh = await inserted.fetchone()
        if fresh is not None:
            return {"id": fresh["id"], "attempts": 1}
        row = await (await conn.execute(
            "SELECT id, status, attempts, body, created_at, error FROM notifications"
            " WHERE idempotency_key = %s FOR UPDATE", (f"step:{step.id}",),
        )).fetchone()
        assert row is not None
        if row["status"] not in ("sending", "retrying") or (
                row["status"] == "sending" and row["attempts"] > 0):
            # Sent already, or a request whose outcome nobody knows: never repeat silently.
            log.warning("step already sent; not repeating", step=step.id, status=row["status"])
            await settle_unknown(conn, step.id, step.incident_id, row, step.action == "call")
            await self._finish(conn, step, "unknown" if row["status"] == "sending" else "done")
            return None
        await conn.execute(
            "UPDATE notifications SET status = 'sending', attempts = attempts + 1,"
            " updated_at = now() WHERE id = %s", (row["id"],),
        )
        # A retry asks the provider first, unless recovery has just asked it.
        return {"id": row["id"], "attempts": row["attempts"] + 1, "body": row["body"],
                "created_at": row["created_at"], "ask": row["error"] != recovery.ABSENT}

    async def _outcome(
        self, conn: AsyncConnection[Any], step: Step, notification: dict[str, Any], voice: bool,
        sid: str | None, failure: str | None, error: str | None,
    ) -> None:
        channel = "voice" if voice else "sms"
        if failure == "unknown" and not voice:
            failure = "retry"  # a possibly duplicated SMS beats a missing one
        if failure == "retry" and notification["attempts"] < self.retry.attempts:
            delay = self.retry.delay(notification["attempts"])
            await conn.execute(
                "UPDATE notifications SET status = 'retrying', error = %s, updated_at = now()"
                " WHERE id = %s", (error, notification["id"]),
            )
            await conn.execute(
                "UPDATE escalation_steps SET status = 'pending', claimed_by = NULL,"
                " worker_lock = NULL, due_at = now() + make_interval(secs => %s)"
                " WHERE id = %s AND status = 'running' AND worker_lock = %s",
                (delay, step.id, self.lock),
            )
            await timeline(conn, step.incident_id, "retrying", name=step.target["name"],
                           phone=step.target["phone"], channel=channel,
                           attempt=notification["attempts"], retry_in_s=round(delay, 2),
                           error=error)
            NOTIFICATIONS.labels(channel, "retrying").inc()
            return
        if failure is None:
            status = "dry_run" if self.channel.dry_run else "sent"
        else:
            status = "unknown" if failure == "unknown" else "failed"
        await conn.execute(
            "UPDATE notifications SET status = %s, provider_sid = %s, error = %s,"
            " updated_at = now() WHERE id = %s", (status, sid, error, notification["id"]),
        )
        if failure is None:
            await conn.execute(
                "UPDATE incidents SET first_notified_at = coalesce(first_notified_at, now())"
                " WHERE id = %s", (step.incident_id,),
            )
        entry = "outcome_unknown" if status == "unknown" else ("call" if voice else "sms")
        await timeline(
            conn, step.incident_id, entry, name=step.target["name"], phone=step.target["phone"],
            recipient=step.target.get("kind"), status=status, notification_id=notification["id"],
            dry_run=self.channel.dry_run, error=error, attempts=notification["attempts"],
        )
        NOTIFICATIONS.labels(channel, status).inc()
        await self._finish(conn, step, "done" if failure is None else status)
        if status == "failed":
            await alarm_if_all_channels_failed(conn, step.incident_id)

    async def _finish(
        self, conn: AsyncConnection[Any], step: Step, result: str, schedule: bool = True,
    ) -> None:
        cur = await conn.execute(
            "UPDATE escalation_steps SET status = %s, result = %s, finished_at = now()"
            " WHERE id = %s AND status = 'running' AND worker_lock = %s",
            ("done" if result == "done" else result, result, step.id, self.lock),
        )
        STEP_LATENCY.observe(max(0.0, time.time() - step.due_at.astimezone(UTC).timestamp()))
        if cur.rowcount == 1 and schedule:
            await schedule_next(conn, step.incident_id, step.seq, step.round)

    async def recover(self) -> int:
        """Steps left running by dead dispatcher processes: resume or settle them. Outcomes
        still unknown are asked about in a task of their own, so a provider that times out
        never holds up the recovery of a dead process's steps."""
        if self._unknowns is None or self._unknowns.done():
            self._unknowns = asyncio.create_task(self._reconcile_unknown())
            self.in_flight.add(self._unknowns)
            self._unknowns.add_done_callback(self.in_flight.discard)
        return await recovery.recover(self.pool, self.lock, self.channel, self.reconciling)

    async def _reconcile_unknown(self) -> None:
        try:
            await recovery.reconcile_unknown(self.pool, self.channel, self.reconciling)
        except Exception:  # e.g. the database lost: asked again at the next recovery
            log.exception("unknown outcomes not reconciled")
