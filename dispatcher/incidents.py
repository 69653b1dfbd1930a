"""Alerts become incidents: one incident per elder emergency.

An alert joins the elder's unresolved incident when a grouping rule (dispatcher/ladder.py
`Rules.grouping`) puts both kinds together and either nobody has taken the incident yet or its
last alert is younger than the rule's window; otherwise it opens a new incident. A resolved
incident never takes a new alert: the next press is a new emergency.

On the incident the joining alert is always visible (timeline `alert_joined`). A more severe
alert raises the severity (the highest wins) and, while nobody has taken it, replaces the pending
ladder: one ladder per incident, so nobody gets two calls for one emergency. An alert joining an
acknowledged incident re-alerts the duty staff and whoever acknowledged ("老人再次求救").

Everything happens in the caller's transaction under a per-elder advisory lock, so two
dispatchers never open two incidents for one elder, and an alert that is seen twice (Kafka
redelivery, a replay after a restart) changes nothing the second time and raises nothing."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncCursor

from dispatcher import claims, roster
from dispatcher.ladder import (
    DEFAULT_RULES,
    REALERT_POLICY,
    Policy,
    Rules,
    Rung,
    grouping_window,
    ladder_for,
    parse_policy,
    parse_rules,
    policy_key,
    staff_only,
)
from dispatcher.metrics import INCIDENTS
from dispatcher.phones import can_receive_sms
from dispatcher.whereabouts import position_statement, remember_position
from foundation import logs
from foundation.contracts.alerts import Alert, Severity

log = logs.get(__name__)

Purpose = str  # "ladder" | "realert" | "reminder" | "outcome" (escalation_steps.purpose)


Statement = tuple[str, tuple[Any, ...]]  # SQL and its parameters, to send later


def timeline_entry(incident_id: uuid.UUID | str, entry: str, **detail: Any) -> Statement:
    """The statement appending to the incident's timeline (see `timeline`)."""
    return ("INSERT INTO incident_timeline (incident_id, kind, detail) VALUES (%s, %s, %s)",
            (incident_id, entry, json.dumps(detail, ensure_ascii=False, default=str)))


async def timeline(
    conn: AsyncConnection[Any], incident_id: uuid.UUID | str, entry: str, **detail: Any,
) -> None:
    """Append to the incident's timeline; a trigger pushes the row to every console."""
    await conn.execute(*timeline_entry(incident_id, entry, **detail))


class AlertRecordedElsewhere(Exception):
    """The alert is on another elder's incident already: the caller rolls back and ignores it
    (a second reading finds it recorded)."""


async def record_alert(conn: AsyncConnection[Any], alert: Alert,
                       first: claims.FirstStep | None = None) -> uuid.UUID | None:
    """Open or join an incident for `alert`; None if this alert was already recorded. With
    `first`, a new incident's first due step is claimed in this transaction too (`first.step`;
    see dispatcher/claims.py)."""
    # Sent together, answered in one round trip (each one costs the first call), executed in
    # this order. One elder at a time: the lookups and the insert cannot interleave with another
    # dispatcher's, so neither a redelivered alert nor a second alert opens a second incident.
    async with conn.pipeline():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 16))",
                           (f"elder:{alert.elder_id}",))
        seen_read = await conn.execute(
            "SELECT incident_id FROM incident_alerts WHERE alert_id = %s", (alert.alert_id,),
        )
        candidates_read = await conn.execute(
            "SELECT id, kind, maintenance, severity, status,"
            " extract(epoch FROM now() - coalesce(last_alert_at, opened_at)) AS idle_s"
            " FROM incidents WHERE elder_id = %s AND status <> 'resolved'"
            " ORDER BY opened_at DESC FOR UPDATE",
            (alert.elder_id,),
        )
        own_policy_read = await conn.execute(_OWN_POLICY, _own_policy_params(alert))
        rules = await rules_for(conn, alert.community_id)
    if await seen_read.fetchone() is not None:
        return None
    candidates = await candidates_read.fetchall()
    for row in candidates:
        window = grouping_window(rules, row["kind"], row["maintenance"], alert.kind,
                                 alert.maintenance)
        if window is None:
            continue
        if row["status"] in ("open", "notifying") or float(row["idle_s"]) <= window:
            if not await _claim_alert(conn, alert, row["id"]):
                return None
            await _join(conn, row, alert, rules)
            await remember_position(conn, str(row["id"]), alert.model_dump(mode="json"))
            return row["id"]  # type: ignore[no-any-return]

    incident_id = uuid.uuid4()
    policy = _policy_of(await own_policy_read.fetchone(), alert, rules)
    # The incident, its alert, timeline and position, and the reads of its ladder: one round
    # trip (the first call waits for this transaction).
    async with conn.pipeline():
        await conn.execute(
            "INSERT INTO incidents (id, elder_id, community_id, kind, severity, status,"
            " event_time, alert_at, maintenance, ladder, last_alert_at)"
            " VALUES (%s, %s, %s, %s, %s, 'open', %s, %s, %s, %s, now())",
            (incident_id, alert.elder_id, alert.community_id, alert.kind, alert.severity,
             alert.event_time, alert.detected_at, alert.maintenance, policy.model_dump_json()),
        )
        claim = await conn.execute(_CLAIM_ALERT, _claim_params(alert, incident_id))
        await conn.execute(*timeline_entry(
            incident_id, "incident_opened", kind=alert.kind, severity=alert.severity,
            alert_id=alert.alert_id, device_id=alert.device_id, room=alert.room))
        await conn.execute(*position_statement(str(incident_id), alert.model_dump(mode="json")))
        reads = await read_people(conn, incident_id, alert.elder_id, alert.community_id,
                                  new=True)
    if claim.rowcount != 1:
        # The same alert id under another elder's lock (never two presses: ids are per
        # event): nothing of this transaction may stay.
        raise AlertRecordedElsewhere(alert.alert_id)
    await add_steps(conn, incident_id, policy, reads, claim=first)
    INCIDENTS.labels(alert.kind, alert.severity.value).inc()
    return incident_id


async def _join(
    conn: AsyncConnection[Any], row: dict[str, Any], alert: Alert, rules: Rules,
) -> None:
    incident_id: uuid.UUID = row["id"]
    await conn.execute("UPDATE incidents SET last_alert_at = now() WHERE id = %s", (incident_id,))
    await timeline(conn, incident_id, "alert_joined", alert_id=alert.alert_id, kind=alert.kind,
                   severity=alert.severity, device_id=alert.device_id, room=alert.room,
                   status=row["status"])
    if alert.severity.rank > Severity(row["severity"]).rank:
        await _escalate(conn, incident_id, alert, row["status"], rules)
    # The elder asks again (a press, or anything critical): whoever holds it must hear it.
    # Lesser news (a vital sign, inactivity) is on the timeline for them to read.
    asks_again = alert.kind == "sos" or alert.severity is Severity.CRITICAL
    if row["status"] == "acknowledged" and not alert.maintenance and asks_again:
        await _realert(conn, incident_id, alert, rules)


async def _realert(
    conn: AsyncConnection[Any], incident_id: uuid.UUID, alert: Alert, rules: Rules,
) -> None:
    """The elder asks again after someone took it: tell the duty staff and whoever took it.
    At most once per `rules.realert_every_s` (a burst of presses is one re-alert)."""
    recent = await (await conn.execute(
        "SELECT 1 FROM incident_timeline WHERE incident_id = %s AND kind = 'realerted'"
        " AND at > now() - make_interval(secs => %s) LIMIT 1",
        (incident_id, rules.realert_every_s),
    )).fetchone()
    if recent is not None:
        return
    steps = await materialise(conn, incident_id, alert.elder_id, alert.community_id,
                              REALERT_POLICY, purpose="realert")
    await timeline(conn, incident_id, "realerted", alert_id=alert.alert_id, kind=alert.kind,
                   steps=steps)


async def rules_for(conn: AsyncConnection[Any], community_id: str) -> Rules:
    """The community's stored rules, else the defaults (a stored set that no longer validates
    is logged and the defaults apply: an emergency never waits for a configuration fix)."""
    row = await (await conn.execute(
        "SELECT rules FROM community_rules WHERE community_id = %s", (community_id,),
    )).fetchone()
    if row is None:
        return DEFAULT_RULES
    try:
        return parse_rules(row["rules"])
    except ValueError as exc:
        log.error("stored community rules are invalid; defaults apply", community=community_id,
                  error=str(exc))
        return DEFAULT_RULES


async def policy_for(conn: AsyncConnection[Any], alert: Alert, rules: Rules) -> Policy:
    """The elder's own policy for this severity if one is stored, else the community's ladder
    for this kind."""
    row = await (await conn.execute(_OWN_POLICY, _own_policy_params(alert))).fetchone()
    return _policy_of(row, alert, rules)


_OWN_POLICY = "SELECT policy FROM escalation_policies WHERE elder_id = %s AND severity = %s"


def _own_policy_params(alert: Alert) -> tuple[str, str]:
    return (alert.elder_id, policy_key(alert.severity, alert.maintenance))


def _policy_of(row: dict[str, Any] | None, alert: Alert, rules: Rules) -> Policy:
    """`policy_for` from the elder's own policy row (None: the community's ladder)."""
    if row is None:
        return ladder_for(rules, alert.kind, alert.severity, alert.maintenance)
    policy = parse_policy(row["policy"])
    return staff_only(policy) if alert.maintenance else policy


async def _escalate(
    conn: AsyncConnection[Any], incident_id: uuid.UUID, alert: Alert, status: str, rules: Rules,
) -> None:
    """A more severe alert: raise the severity and, while nobody has taken responsibility,
    replace the pending steps with the new alert's ladder starting now."""
    await conn.execute(
        "UPDATE incidents SET severity = %s WHERE id = %s", (alert.severity, incident_id)
    )
    await timeline(conn, incident_id, "escalated", severity=alert.severity, kind=alert.kind)
    if status not in ("open", "notifying"):
        return
    await conn.execute(
        "UPDATE escalation_steps SET status = 'superseded', finished_at = now()"
        " WHERE incident_id = %s AND status = 'pending'", (incident_id,),
    )
    policy = await policy_for(conn, alert, rules)
    await conn.execute(
        "UPDATE incidents SET ladder = %s WHERE id = %s", (policy.model_dump_json(), incident_id)
    )
    await materialise(conn, incident_id, alert.elder_id, alert.community_id, policy)


_CLAIM_ALERT = ("INSERT INTO incident_alerts (alert_id, incident_id, alert) VALUES (%s, %s, %s)"
                " ON CONFLICT (alert_id) DO NOTHING")


def _claim_params(alert: Alert, incident_id: uuid.UUID) -> tuple[str, uuid.UUID, str]:
    return (alert.alert_id, incident_id, alert.model_dump_json())


async def _claim_alert(conn: AsyncConnection[Any], alert: Alert, incident_id: uuid.UUID) -> bool:
    cur = await conn.execute(_CLAIM_ALERT, _claim_params(alert, incident_id))
    return cur.rowcount == 1


async def materialise(
    conn: AsyncConnection[Any], incident_id: uuid.UUID | str, elder_id: str, community_id: str,
    policy: Policy, purpose: Purpose = "ladder",
) -> int:
    """One step row per rung, recipient and round, numbered after the incident's existing steps.
    The leading steps with no wait are due now (they run side by side: the call to contact 1
    does not wait for the staff SMS); each later step is scheduled when the one before it
    finishes. Staff are those on shift now in the community's time zone (dispatcher/roster.py);
    with nobody on shift at any level the timeline says so."""
    # The reads are independent: sent together, answered in one round trip (the first call
    # waits for this transaction).
    async with conn.pipeline():
        reads = await read_people(conn, incident_id, elder_id, community_id)
    return await add_steps(conn, incident_id, policy, reads, purpose)


@dataclass
class PeopleReads:
    """The reads of `read_people`, sent; `add_steps` takes their answers."""

    contacts: AsyncCursor[Any]
    community: AsyncCursor[Any]
    who: AsyncCursor[Any]
    last: AsyncCursor[Any] | None  # None: a new incident, no step yet
    staff: list[dict[str, Any]]
    level: str


async def read_people(conn: AsyncConnection[Any], incident_id: uuid.UUID | str, elder_id: str,
                      community_id: str, new: bool = False) -> PeopleReads:
    """Send the reads a ladder needs (in the caller's pipeline: one round trip with whatever
    it sent before); `new`: the incident has no steps yet."""
    contacts = await conn.execute(
        "SELECT priority, name, phone, can_sms, language, channels FROM contacts"
        " WHERE elder_id = %s ORDER BY priority", (elder_id,),
    )
    community = await conn.execute(
        "SELECT name, emergency_line FROM communities WHERE id = %s", (community_id,),
    )
    who = await conn.execute(
        "SELECT e.name, e.phone, e.language, i.acknowledged_by, i.acknowledged_phone"
        " FROM elders e LEFT JOIN incidents i ON i.id = %s WHERE e.id = %s",
        (str(incident_id), elder_id),
    )
    last = None if new else await conn.execute(
        "SELECT coalesce(max(seq), 0) AS seq FROM escalation_steps WHERE incident_id = %s",
        (str(incident_id),),
    )
    staff, level = await roster.on_duty(conn, community_id)  # its answer ends the round trip
    return PeopleReads(contacts, community, who, last, staff, level)


async def add_steps(conn: AsyncConnection[Any], incident_id: uuid.UUID | str, policy: Policy,
                    reads: PeopleReads, purpose: Purpose = "ladder",
                    claim: claims.FirstStep | None = None) -> int:
    """The steps of `policy` for the people `reads` found (see `materialise`); how many. With
    `claim`, the first due one is claimed with them (`claim.step`)."""
    contacts = await reads.contacts.fetchall()
    community = await reads.community.fetchone()
    who = await reads.who.fetchone()
    last = await reads.last.fetchone() if reads.last is not None else None
    staff, level = reads.staff, reads.level
    later: list[Statement] = []  # sent with the steps
    if level != "community" and any(r.target in ("staff", "duty_lead") for r in policy.rungs):
        later.append(timeline_entry(incident_id, "duty_level", level=level,
                                    staff=[s["name"] for s in staff]))
    line = community["emergency_line"] if community else ""
    people = People(
        contacts=contacts, staff=staff, emergency_line=line,
        elder={"name": who["name"], "phone": who["phone"], "language": who["language"]}
        if who and who["phone"] else None,
        acknowledger={"name": who["acknowledged_by"] or "", "phone": who["acknowledged_phone"]}
        if who and who["acknowledged_phone"] else None,
        lead=roster.duty_lead(staff),
    )
    seq = int(last["seq"]) if last else 0
    first = seq + 1
    carry = 0.0  # the wait of a rung without recipients passes to the next one
    leading = True  # still in the prefix of steps without any wait
    rows: list[tuple[object, ...]] = []
    for round_no in range(1, policy.rounds + 1):
        if round_no > 1:
            carry += policy.round_wait_s
        reached: set[tuple[str, str]] = set()  # one SMS and one call per number and round
        for rung in policy.rungs:
            carry += rung.wait_s
            for target in people.reached_by(rung):
                key = (rung.action, target.get("phone") or target["name"])
                if rung.action in ("call", "sms") and key in reached:
                    continue
                reached.add(key)
                seq += 1
                leading = leading and carry == 0 and round_no == 1
                rows.append((str(incident_id), seq, round_no, rung.action,
                             json.dumps(target, ensure_ascii=False), carry, purpose,
                             seq == first or leading, carry))
                carry = 0.0
    # One pipelined batch, not a round trip per step: the first call waits for this.
    async with conn.pipeline():
        for statement in later:
            await conn.execute(*statement)
        await conn.cursor().executemany(
            "INSERT INTO escalation_steps (incident_id, seq, round, action, target,"
            " wait_s, purpose, due_at) VALUES (%s, %s, %s, %s, %s, %s, %s,"
            " CASE WHEN %s THEN now() + make_interval(secs => %s) END)", rows,
        )
        claimed = await conn.execute(claims.CLAIM_OF_INCIDENT, claim.params(str(incident_id))) \
            if claim is not None and seq >= first else None
        if seq >= first:
            await conn.execute("SELECT pg_notify('escalation_due', %s)", (str(incident_id),))
    if claim is not None and claimed is not None:
        claim.step = await claimed.fetchone()
    return seq - first + 1


class People:
    """Everyone a ladder can reach for one incident."""

    def __init__(
        self, contacts: list[dict[str, Any]], staff: list[dict[str, Any]], emergency_line: str,
        elder: dict[str, Any] | None = None, acknowledger: dict[str, Any] | None = None,
        lead: list[dict[str, Any]] | None = None,
    ) -> None:
        self.contacts, self.staff, self.line = contacts, staff, emergency_line
        self.elder, self.acknowledger, self.lead = elder, acknowledger, lead or []

    def reached_by(self, rung: Rung) -> list[dict[str, Any]]:
        """Who one rung reaches."""
        return recipients(rung, self.contacts, self.staff, self.line, elder=self.elder,
                          acknowledger=self.acknowledger, lead=self.lead)


def _staff(people: list[dict[str, Any]], kind: str = "staff") -> list[dict[str, Any]]:
    return [{"kind": kind, "name": s["name"], "phone": s["phone"], "language": "zh-Hans",
             "sms": can_receive_sms(s["phone"])} for s in people]


def recipients(
    rung: Rung, contacts: list[dict[str, Any]], staff: list[dict[str, Any]], emergency_line: str,
    *, elder: dict[str, Any] | None = None, acknowledger: dict[str, Any] | None = None,
    lead: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Who one rung reaches. SMS only to numbers that can receive it (landlines are called)."""
    if rung.target == "console":
        return [{"kind": "console", "name": "console", "phone": ""}] \
            if rung.action == "console" else []
    if rung.action == "queue":  # a work item on the console, whoever is on shift takes it
        return [{"kind": "queue", "name": "staff_queue", "phone": "",
                 "staff": [s["name"] for s in staff]}]
    if rung.target == "staff":
        people = _staff(staff)
    elif rung.target == "duty_lead":
        people = _staff(lead or [], "duty_lead")
    elif rung.target == "elder":
        people = [{"kind": "elder", "name": elder["name"], "phone": elder["phone"],
                   "language": elder.get("language", "zh-Hans"),
                   "sms": can_receive_sms(elder["phone"])}] if elder else []
    elif rung.target == "acknowledger":
        people = [{"kind": "acknowledger", "name": acknowledger["name"],
                   "phone": acknowledger["phone"], "language": "zh-Hans",
                   "sms": can_receive_sms(acknowledger["phone"])}] if acknowledger else []
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
