"""Steps left "running" by a dispatcher that died (its advisory lock is free), recovered by any
other worker, and notifications whose outcome nobody knows, settled by asking the provider.

A step with no notification row, or one waiting for a retry, simply runs again. A step whose
notification row is still "sending" died between the commit before the Twilio request and the
commit of its answer: the request may never have left the dead process, or Twilio may have
created the call. Instead of guessing, the recovering worker takes the step over (its own lock,
so nobody else acts on it), waits until the row is `settle_s` old and asks the channel
(`Channel.sent`: Twilio's list of calls/messages from our number to that number since the row
was written, minus the SIDs other rows already hold):
- Twilio has it: its SID and status are adopted, the step is done (no second call);
- Twilio has nothing: the request never arrived, the step runs again at once (exactly one call);
- Twilio cannot be asked: the row is marked unknown for staff and the ladder moves on, as
  before; `reconcile_unknown` asks again every `retry_s` for an hour, adopting what Twilio has
  or sending what it never got (while the incident still wants it).

Why a settle time: the dead process cannot send anything more, so the only request still in
flight is one Twilio has received and not yet created. The process writes its request within
milliseconds of the commit; `settle_s` (default 1 s) after the commit such a request has been
created by a provider answering in well under a second. A provider slower than that would get
a second call (a duplicate, never a loss)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from dispatcher.channels import Channel, Kind, Sent
from dispatcher.incidents import timeline
from dispatcher.metrics import NOTIFICATIONS, RECONCILED
from dispatcher.progress import RUNS_WHILE, schedule_next
from foundation import db, logs

log = logs.get(__name__)

# Clock difference tolerated between PostgreSQL's now() and Twilio's date_created (which has
# whole seconds): a record up to this much older than the row still counts. An older call to
# the same number is recognised by its SID, which another row holds.
SKEW = timedelta(seconds=30)
# How long an unknown outcome is asked about again; later, staff have long decided.
UNKNOWN_FOR = timedelta(hours=1)
# The error of a row the provider was just asked about and lacks: its retry is not asked again.
ABSENT = "not at the provider after the dispatcher stopped: sent again"


@dataclass(frozen=True)
class Reconciling:
    """How recovery asks the provider (see the module docstring)."""

    settle_s: float = 1.0
    retry_s: float = 15.0
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Question:
    """A step whose notification is still "sending": what to ask the provider."""

    step_id: int
    incident_id: Any
    seq: int
    round: int
    action: str
    notification_id: int
    to_number: str
    body: str
    created_at: datetime
    provider_sid: str | None
    age_s: float  # how long ago the row was last written (the request's commit)


async def recover(pool: db.Pool, own_lock: int, channel: Channel,
                  how: Reconciling | None = None) -> int:
    """Steps left running by dead dispatcher processes (every worker lock but `own_lock` that is
    free): resume them, or ask the provider what became of them. Returns how many steps were
    recovered. (`reconcile_unknown` runs beside it: see `StepRunner.recover`.)"""
    how = how or Reconciling()
    recovered = 0
    questions: list[Question] = []
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
            n, asks = await recover_steps(conn, key, own_lock)
            await conn.commit()
            recovered += n
            questions += asks
    if questions:
        await reconcile_all(pool, channel, questions, own_lock, how)
    return recovered


async def reconcile_all(pool: db.Pool, channel: Channel, questions: list[Question],
                        owner: int, how: Reconciling) -> None:
    """`reconcile` each question: the numbers side by side, each number's rows one after the
    other in the order they were written, so each adopts the oldest record nobody holds (the
    requests left in that order)."""
    by_number: dict[str, list[Question]] = {}
    for q in sorted(questions, key=lambda q: q.created_at):
        by_number.setdefault(q.to_number, []).append(q)

    async def one_number(qs: list[Question]) -> None:
        for q in qs:
            await reconcile(pool, channel, q, owner, how)

    await asyncio.gather(*(one_number(qs) for qs in by_number.values()))


async def recover_steps(conn: AsyncConnection[Any], key: int, owner: int,
                        step_id: int | None = None, give_up: bool = False
                        ) -> tuple[int, list[Question]]:
    """Resume or settle the running steps of worker `key` (one step if `step_id`). A step whose
    notification is still "sending" is taken over by worker `owner` and returned, to be
    `reconcile`d once committed."""
    steps = await (await conn.execute(
        "SELECT id, incident_id, seq, round, action FROM escalation_steps"
        " WHERE status = 'running' AND worker_lock = %s AND (%s::bigint IS NULL OR id = %s)"
        " FOR UPDATE SKIP LOCKED", (key, step_id, step_id),
    )).fetchall()
    questions = []
    for s in steps:
        n = await (await conn.execute(
            "SELECT id, status, attempts, to_number, body, created_at, provider_sid,"
            " extract(epoch FROM now() - updated_at)::float8 AS age_s"
            " FROM notifications WHERE idempotency_key = %s FOR UPDATE", (f"step:{s['id']}",),
        )).fetchone()
        sending = n is not None and n["status"] == "sending" and n["attempts"] > 0
        if give_up and not sending:
            await conn.execute(
                "UPDATE escalation_steps SET status = 'failed', result = 'crashed',"
                " finished_at = now() WHERE id = %s", (s["id"],),
            )
            await timeline(conn, s["incident_id"], "step_failed", step=s["id"],
                           action=s["action"])
            await schedule_next(conn, s["incident_id"], s["seq"], s["round"])
        elif n is None or n["status"] == "retrying" or n["status"] == "sending":
            if sending:  # ours now: nobody else acts on it while we ask Twilio
                assert n is not None
                await conn.execute(
                    "UPDATE escalation_steps SET worker_lock = %s, claimed_at = now()"
                    " WHERE id = %s", (owner, s["id"]))
                questions.append(Question(
                    s["id"], s["incident_id"], s["seq"], s["round"], s["action"], n["id"],
                    n["to_number"], n["body"], n["created_at"], n["provider_sid"], n["age_s"]))
                log.warning("step of a dead dispatcher: asking the provider", step=s["id"])
                continue
            # Nothing reached Twilio: run it again.
            await _resume(conn, s["id"], s["incident_id"], s["action"])
        else:  # sent or settled already: the step only has to finish
            await conn.execute(
                "UPDATE escalation_steps SET status = 'done', result = 'done',"
                " finished_at = now() WHERE id = %s", (s["id"],),
            )
            await schedule_next(conn, s["incident_id"], s["seq"], s["round"])
        log.warning("step of a dead dispatcher recovered", step=s["id"])
    if steps:
        await conn.execute("SELECT pg_notify('escalation_due', 'recovered')")
    return len(steps), questions


async def reconcile(pool: db.Pool, channel: Channel, q: Question, owner: int,
                    how: Reconciling) -> None:
    """Ask the provider about a step taken over by `owner` (see the module docstring)."""
    kind: Kind = "call" if q.action == "call" else "sms"
    if q.age_s < how.settle_s:  # a request Twilio received may not be created yet
        await asyncio.sleep(how.settle_s - q.age_s)
    found: list[Sent] = []
    error = None
    if q.provider_sid is None:  # a status callback may already have told us the SID
        try:
            found = await ask(channel, kind, q.to_number, q.created_at, how.timeout_s)
        except Exception as exc:  # an outage: unknown for now, asked again later
            error = f"{type(exc).__name__}: {exc}"
    async with pool.connection() as conn:
        mine = await (await conn.execute(
            "SELECT s.id, s.target, n.provider_sid FROM escalation_steps s"
            " JOIN notifications n ON n.id = %s"
            " WHERE s.id = %s AND s.status = 'running' AND s.worker_lock = %s"
            " AND n.status = 'sending' FOR UPDATE OF s, n",
            (q.notification_id, q.step_id, owner))).fetchone()
        if mine is None:  # settled meanwhile (e.g. by this process's own runner)
            return
        sent = await unclaimed(conn, q.notification_id, q.to_number, q.body, found)
        if mine["provider_sid"] is not None or sent is not None:
            await _adopt(conn, q.notification_id, q.incident_id, mine["target"], kind,
                         mine["provider_sid"], sent, channel.dry_run)
            await _finish(conn, q, "done")
            RECONCILED.labels(kind, "adopted").inc()
        elif error is None:
            await _send_again(conn, q.notification_id, q.step_id, q.incident_id, q.action, kind)
        else:
            log.warning("provider cannot be asked; outcome unknown for now", step=q.step_id,
                        error=error)
            await settle_unknown(conn, q.step_id, q.incident_id,
                                 {"id": q.notification_id, "status": "sending"}, kind == "call")
            await _finish(conn, q, "unknown")
            RECONCILED.labels(kind, "unknown").inc()
        await conn.commit()
    log.warning("step reconciled with the provider", step=q.step_id,
                outcome="adopted" if sent or mine["provider_sid"] else
                ("resent" if error is None else "unknown"), age_s=round(q.age_s, 3))


async def reconcile_unknown(pool: db.Pool, channel: Channel, how: Reconciling) -> int:
    """Ask again about notifications marked unknown in the last hour (the provider could not be
    asked, or a request timed out), each at most every `retry_s`: adopt what the provider has;
    send again what it never got, if the incident still wants it. Returns how many settled."""
    async with pool.connection() as conn:
        rows = await (await conn.execute(
            "SELECT n.id, n.step_id, n.incident_id, n.channel, n.to_number, n.body,"
            " n.created_at, n.provider_sid"
            " FROM notifications n JOIN escalation_steps s ON s.id = n.step_id"
            " WHERE n.status = 'unknown' AND s.status = 'unknown' AND n.created_at > now() - %s"
            " AND n.updated_at < now() - make_interval(secs => %s)"
            " ORDER BY n.updated_at LIMIT 10", (UNKNOWN_FOR, how.retry_s),
        )).fetchall()
    settled = 0
    for r in rows:
        kind: Kind = "call" if r["channel"] == "voice" else "sms"
        found: list[Sent] = []
        if r["provider_sid"] is None:
            try:
                found = await ask(channel, kind, r["to_number"], r["created_at"], how.timeout_s)
            except Exception as exc:  # still down: the rest of the batch waits too
                log.warning("provider still cannot be asked", notification=r["id"],
                            error=f"{type(exc).__name__}: {exc}")
                async with pool.connection() as conn:
                    await conn.execute("UPDATE notifications SET updated_at = now()"
                                       " WHERE id = ANY(%s) AND status = 'unknown'",
                                       ([x["id"] for x in rows],))
                    await conn.commit()
                break
        async with pool.connection() as conn:
            step = await (await conn.execute(
                "SELECT s.id, s.target, s.purpose, s.action, n.provider_sid, i.status"
                " AS incident_status, EXISTS (SELECT 1 FROM notifications later"
                "   WHERE later.incident_id = n.incident_id AND later.to_number = n.to_number"
                "   AND later.id > n.id AND later.status IN ('sent', 'dry_run')) AS reached"
                " FROM escalation_steps s JOIN notifications n ON n.id = %s"
                " JOIN incidents i ON i.id = s.incident_id WHERE s.id = %s"
                " AND s.status = 'unknown' AND n.status = 'unknown' FOR UPDATE OF s, n",
                (r["id"], r["step_id"]))).fetchone()
            if step is None:
                continue  # settled by another worker meanwhile
            sent = await unclaimed(conn, r["id"], r["to_number"], r["body"], found)
            if step["provider_sid"] is not None or sent is not None:
                await _adopt(conn, r["id"], r["incident_id"], step["target"], kind,
                             step["provider_sid"], sent, channel.dry_run)
                await conn.execute("UPDATE escalation_steps SET status = 'done', result = 'done'"
                                   " WHERE id = %s", (r["step_id"],))
                RECONCILED.labels(kind, "adopted").inc()
            elif step["incident_status"] in RUNS_WHILE.get(step["purpose"], ()) \
                    and not step["reached"]:
                # Never reached the provider and still wanted (nobody responsible, the number
                # not reached by a later rung or round): sent now, late beats never.
                await _send_again(conn, r["id"], r["step_id"], r["incident_id"], step["action"],
                                  kind)
            else:
                await conn.execute(
                    "UPDATE notifications SET status = 'failed', error = %s, updated_at = now()"
                    " WHERE id = %s", ("never reached the provider; not sent now: "
                                       + ("the number was reached since" if step["reached"]
                                          else f"the incident is {step['incident_status']}"),
                                       r["id"]))
                RECONCILED.labels(kind, "dropped").inc()
            await conn.commit()
            settled += 1
    return settled


async def ask(channel: Channel, kind: Kind, to_number: str, created_at: datetime,
              timeout_s: float) -> list[Sent]:
    """What the provider has sent to `to_number` since a row written at `created_at` (less the
    clock skew allowed); raises when it cannot be asked within `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        return await channel.sent(kind, to_number, created_at - SKEW)


async def _send_again(conn: AsyncConnection[Any], notification_id: int, step_id: int,
                      incident_id: Any, action: str, kind: Kind) -> None:
    """The provider never got it: the step runs again, and its retry does not ask again
    (`ABSENT`: it has just been asked)."""
    await conn.execute(
        "UPDATE notifications SET status = 'retrying', error = %s, updated_at = now()"
        " WHERE id = %s", (ABSENT, notification_id))
    await _resume(conn, step_id, incident_id, action)
    await conn.execute("SELECT pg_notify('escalation_due', 'recovered')")
    RECONCILED.labels(kind, "resent").inc()


async def unclaimed(conn: AsyncConnection[Any], notification_id: int, to_number: str,
                     body: str, found: list[Sent]) -> Sent | None:
    """The oldest record the provider has that no other notification row holds (an SMS: with
    this row's text). Takes a transaction lock on the number: two rows to one number (two
    elders with the same contact) never adopt the same record."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                       (f"reconcile:{to_number}",))
    found = [f for f in found if f.body is None or f.body == body]
    if not found:
        return None
    held = {r["provider_sid"] for r in await (await conn.execute(
        "SELECT provider_sid FROM notifications WHERE provider_sid = ANY(%s) AND id <> %s",
        ([f.sid for f in found], notification_id))).fetchall()}
    free = [f for f in found if f.sid not in held]
    return min(free, key=lambda f: f.created) if free else None


async def _adopt(conn: AsyncConnection[Any], notification_id: int, incident_id: Any,
                 target: dict[str, Any], kind: str, known_sid: str | None, sent: Sent | None,
                 dry_run: bool) -> None:
    """The provider has it: the row takes its SID and status; no second request."""
    status = "dry_run" if dry_run else "sent"
    sid = known_sid or (sent.sid if sent else None)
    await conn.execute(
        "UPDATE notifications SET status = %s, provider_sid = %s,"
        " provider_status = coalesce(provider_status, %s), error = NULL, updated_at = now()"
        " WHERE id = %s", (status, sid, sent.status if sent else None, notification_id))
    await conn.execute(
        "UPDATE incidents SET first_notified_at = coalesce(first_notified_at, now())"
        " WHERE id = %s", (incident_id,))
    await timeline(conn, incident_id, kind, name=target.get("name"), phone=target.get("phone"),
                   recipient=target.get("kind"), status=status, notification_id=notification_id,
                   dry_run=dry_run, adopted=True, provider_sid=sid)
    NOTIFICATIONS.labels("voice" if kind == "call" else "sms", status).inc()


async def _resume(conn: AsyncConnection[Any], step_id: int, incident_id: Any,
                  action: str) -> None:
    await conn.execute(
        "UPDATE escalation_steps SET status = 'pending', due_at = now(),"
        " claimed_by = NULL, worker_lock = NULL WHERE id = %s", (step_id,),
    )
    await timeline(conn, incident_id, "step_resumed", step=step_id, action=action)


async def _finish(conn: AsyncConnection[Any], q: Question, result: str) -> None:
    await conn.execute(
        "UPDATE escalation_steps SET status = %s, result = %s, finished_at = now()"
        " WHERE id = %s", (result, result, q.step_id),
    )
    await schedule_next(conn, q.incident_id, q.seq, q.round)


async def settle_unknown(
    conn: AsyncConnection[Any], step_id: int, incident_id: Any, notification: dict[str, Any],
    voice: bool,
) -> None:
    """A notification still "sending" whose sender is gone and the provider cannot be asked:
    mark it unknown for staff (asked again later by `reconcile_unknown`)."""
    if notification["status"] != "sending":
        return
    await conn.execute(
        "UPDATE notifications SET status = 'unknown', error = 'outcome unknown: the dispatcher"
        " stopped during the Twilio request and Twilio could not be asked yet', updated_at ="
        " now() WHERE id = %s",
        (notification["id"],),
    )
    await timeline(conn, incident_id, "outcome_unknown", step=step_id,
                   notification_id=notification["id"], channel="voice" if voice else "sms")
    NOTIFICATIONS.labels("voice" if voice else "sms", "unknown").inc()
