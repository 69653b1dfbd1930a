"""Privacy of elders' personal data: retention by age, and one elder's data exported or erased.

Retention (`enforce_retention`, run by `eldercare registry maintain-readings` next to the
readings partitions) deletes location readings, sent calls/SMS and audit rows past their age,
and anonymises old resolved incidents. `export_elder` gathers everything held on one elder (for
a request under PIPL art. 45); `erase_elder` removes it (art. 47) but keeps their incidents,
anonymised, so the statistics of response times and outcomes stay true."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from devices.registry import AsyncConn
from foundation import audit
from foundation.config import Settings
from foundation.security import Principal

# Columns of an incident that name or reach a person; some exist only after other migrations.
_INCIDENT_PERSONAL = {"notes": "''", "acknowledged_by": "NULL", "claimed_by": "NULL",
                      "acknowledged_phone": "NULL"}
# An elder's row after erasure: the id and community stay (the incidents point at them).
_ELDER_ERASED = {"name": "''", "address": "''", "phone": "''", "id_number": "''",
                 "medical_notes": "''", "lives_alone": "false", "care_level": "'self_care'",
                 "active": "false", "detector_thresholds": "'{}'", "home": "NULL",
                 "safe_zone": "NULL", "updated_at": "now()", "erased_at": "now()"}


class ErasureRefused(Exception):
    """The elder cannot be erased now (unknown, or an incident is still open)."""


async def _columns(conn: AsyncConn, table: str) -> set[str]:
    rows = await (await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
        (table,))).fetchall()
    return {r["column_name"] for r in rows}


async def anonymise_incidents(conn: AsyncConn, ids: list[Any]) -> int:
    """Strip names, numbers, notes and payloads from these incidents; kind, severity, community,
    times, status and outcome stay for statistics. Their calls/SMS rows go."""
    if not ids:
        return 0
    present = await _columns(conn, "incidents")
    sets = ", ".join(f"{c} = {v}" for c, v in _INCIDENT_PERSONAL.items() if c in present)
    await conn.execute(f"UPDATE incidents SET {sets}, anonymised_at = now()"
                       " WHERE id = ANY(%s)", (ids,))
    await conn.execute("UPDATE incident_timeline SET detail = '{}' WHERE incident_id = ANY(%s)",
                       (ids,))
    await conn.execute("UPDATE incident_alerts SET alert = '{}' WHERE incident_id = ANY(%s)",
                       (ids,))
    await conn.execute("UPDATE escalation_steps SET target = '{}' WHERE incident_id = ANY(%s)",
                       (ids,))
    await conn.execute("DELETE FROM notifications WHERE incident_id = ANY(%s)", (ids,))
    # The family page's links name the contact: they go, and the page with them.
    await conn.execute("DELETE FROM family_links WHERE incident_id = ANY(%s)", (ids,))
    return len(ids)


async def enforce_retention(conn: AsyncConn, settings: Settings) -> dict[str, int]:
    """Apply the retention settings once; returns how many rows each rule touched. Readings
    in general go with their day partitions (`devices.readings.partitions.maintain`)."""
    def days(n: int) -> timedelta:
        return timedelta(days=n)

    done: dict[str, int] = {}
    location = days(settings.location_retention_days)
    done["location_readings"] = (await conn.execute(
        "DELETE FROM readings WHERE type = 'location' AND event_time < now() - %s",
        (location,))).rowcount
    done["location_rollups"] = (await conn.execute(
        "DELETE FROM readings_hourly WHERE type = 'location' AND hour < now() - %s",
        (location,))).rowcount
    done["notifications"] = (await conn.execute(
        "DELETE FROM notifications n USING incidents i WHERE i.id = n.incident_id"
        " AND i.status = 'resolved' AND n.created_at < now() - %s",
        (days(settings.notifications_retention_days),))).rowcount
    # What the dry-run channel "sent" names phone numbers too (table of migration 0019).
    done["dry_run_sent"] = (await conn.execute(
        "DELETE FROM dry_run_sent WHERE created_at < now() - %s",
        (days(settings.notifications_retention_days),))).rowcount
    old = await (await conn.execute(
        "SELECT id FROM incidents WHERE status = 'resolved' AND anonymised_at IS NULL"
        " AND resolved_at < now() - %s", (days(settings.incidents_retention_days),),
    )).fetchall()
    done["incidents_anonymised"] = await anonymise_incidents(conn, [r["id"] for r in old])
    done["audit"] = (await conn.execute(
        "DELETE FROM audit_log WHERE at < now() - %s",
        (days(settings.audit_retention_days),))).rowcount
    return done


async def _all(conn: AsyncConn, sql: str, *params: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await (await conn.execute(sql, params)).fetchall()]


def operator(who: str) -> Principal:
    """The person at the command line, as recorded in the audit log."""
    return Principal(who, "system", None, who)


async def export_elder(conn: AsyncConn, elder_id: str, who: str) -> dict[str, Any] | None:
    """Everything held on one elder, as JSON-ready dicts; None when unknown. The full ID number
    is included: the export goes to the elder (or their guardian) themselves. Audited as
    `export` by `who`."""
    elder = await (await conn.execute(
        "SELECT * FROM elders WHERE id = %s", (elder_id,))).fetchone()
    if elder is None:
        return None
    await audit.record(conn, operator(who), "export", "elder", elder_id, elder["community_id"],
                       client="eldercare registry export")
    incidents = await _all(conn, "SELECT * FROM incidents WHERE elder_id = %s ORDER BY opened_at",
                           elder_id)
    ids = [i["id"] for i in incidents]
    by_incident = {
        "timeline": "SELECT * FROM incident_timeline WHERE incident_id = ANY(%s) ORDER BY id",
        "alerts": "SELECT * FROM incident_alerts WHERE incident_id = ANY(%s)",
        "steps": "SELECT * FROM escalation_steps WHERE incident_id = ANY(%s) ORDER BY id",
        "notifications": "SELECT * FROM notifications WHERE incident_id = ANY(%s) ORDER BY id",
    }
    for key, sql in by_incident.items():
        rows = await _all(conn, sql, ids)
        for incident in incidents:
            incident[key] = [r for r in rows if r["incident_id"] == incident["id"]]
    return {
        "elder": dict(elder),
        "community": dict(await (await conn.execute(
            "SELECT id, name, district, street FROM communities WHERE id = %s",
            (elder["community_id"],))).fetchone() or {}),
        "contacts": await _all(conn, "SELECT * FROM contacts WHERE elder_id = %s"
                                     " ORDER BY priority", elder_id),
        "devices": await _all(conn, "SELECT * FROM devices WHERE elder_id = %s ORDER BY id",
                              elder_id),
        "away_periods": await _all(conn, "SELECT * FROM elder_away_periods WHERE elder_id = %s"
                                         " ORDER BY starts_at", elder_id),
        "escalation_policies": await _all(
            conn, "SELECT * FROM escalation_policies WHERE elder_id = %s", elder_id),
        "readings": await _all(conn, "SELECT * FROM readings WHERE elder_id = %s"
                                     " ORDER BY event_time", elder_id),
        "readings_hourly": await _all(conn, "SELECT * FROM readings_hourly WHERE elder_id = %s"
                                            " ORDER BY hour", elder_id),
        "detector_state": await _all(conn, "SELECT * FROM detector_state WHERE elder_id = %s",
                                     elder_id),
        "incidents": incidents,
        "access_log": await _all(
            conn, "SELECT id, at, username, role, action, object_type, object_id, client, detail"
                  " FROM audit_log WHERE object_type = 'elder' AND object_id = %s ORDER BY id",
            elder_id),
    }


async def erase_elder(conn: AsyncConn, elder_id: str, who: str) -> dict[str, int]:
    """Remove the elder's personal data in the caller's transaction: contacts, devices and their
    logins, away periods, policies, readings, detector state; the elder row is emptied and
    marked erased; their incidents are anonymised. Audited as `erase` by `who`. Raises
    ErasureRefused when unknown or while an incident is open (it is still being handled)."""
    elder = await (await conn.execute(
        "SELECT community_id FROM elders WHERE id = %s FOR UPDATE", (elder_id,))).fetchone()
    if elder is None:
        raise ErasureRefused(f"no elder {elder_id!r}")
    incidents = await (await conn.execute(
        "SELECT id, status FROM incidents WHERE elder_id = %s", (elder_id,))).fetchall()
    if any(i["status"] != "resolved" for i in incidents):
        raise ErasureRefused(f"elder {elder_id!r} has an open incident: resolve it first")
    done: dict[str, int] = {}
    for table, sql in (
        ("readings", "DELETE FROM readings WHERE elder_id = %s"),
        ("readings_hourly", "DELETE FROM readings_hourly WHERE elder_id = %s"),
        ("detector_state", "DELETE FROM detector_state WHERE elder_id = %s"),
        ("contacts", "DELETE FROM contacts WHERE elder_id = %s"),
        ("away_periods", "DELETE FROM elder_away_periods WHERE elder_id = %s"),
        ("escalation_policies", "DELETE FROM escalation_policies WHERE elder_id = %s"),
        ("device_credentials", "DELETE FROM device_credentials WHERE device_id IN"
                               " (SELECT id FROM devices WHERE elder_id = %s)"),
        ("devices", "DELETE FROM devices WHERE elder_id = %s"),
    ):
        done[table] = (await conn.execute(sql, (elder_id,))).rowcount
    done["incidents_anonymised"] = await anonymise_incidents(conn, [i["id"] for i in incidents])
    present = await _columns(conn, "elders")
    sets = ", ".join(f"{c} = {v}" for c, v in _ELDER_ERASED.items() if c in present)
    await conn.execute(f"UPDATE elders SET {sets} WHERE id = %s", (elder_id,))
    await audit.record(conn, operator(who), "erase", "elder", elder_id, elder["community_id"],
                       client="eldercare registry erase", **done)
    return done
