"""Read models for the console, each filtered by the caller's scope (`Principal`): incidents
with their elder, notifications and timeline; elders; device health."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from devices.records import mask_id_number
from dispatcher.whereabouts import locate, recent_positions
from foundation.security import Principal

# Columns only roles that need them see (`Principal.sees_personal_data`).
PERSONAL_FIELDS = frozenset({"medical_notes", "id_number", "national_id", "id_card"})
LOW_BATTERY = 20  # percent


def scope(principal: Principal) -> list[str] | None:
    """The community ids a query may touch (None: all), as a SQL array parameter."""
    return None if principal.community_ids is None else sorted(principal.community_ids)


_INCIDENTS = """
SELECT i.id, i.elder_id, i.community_id, i.kind, i.severity, i.status, i.opened_at, i.event_time,
       i.acknowledged_at, i.acknowledged_by, i.claimed_at, i.claimed_by, i.resolved_at,
       i.outcome, i.notes, e.name AS elder_name, e.address, e.lives_alone,
       c.name AS community_name, i.location, e.home
FROM incidents i JOIN elders e ON e.id = i.elder_id JOIN communities c ON c.id = i.community_id
WHERE (%(all)s OR i.status <> 'resolved') AND (%(id)s::uuid IS NULL OR i.id = %(id)s::uuid)
  AND (%(elder)s::text IS NULL OR i.elder_id = %(elder)s)
  AND (%(scope)s::text[] IS NULL OR i.community_id = ANY(%(scope)s))
ORDER BY CASE i.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END,
         i.opened_at
LIMIT 500
"""


async def incidents(
    conn: AsyncConnection[Any], principal: Principal, include_resolved: bool = False,
    incident_id: str | None = None, elder_id: str | None = None,
) -> list[dict[str, Any]]:
    """Incidents the principal may see, most severe and oldest first, with their story."""
    rows = await (await conn.execute(_INCIDENTS, {
        "all": include_resolved, "id": incident_id, "elder": elder_id, "scope": scope(principal),
    })).fetchall()
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    notes = await (await conn.execute(
        "SELECT id, incident_id, channel, to_number, recipient, body, status, dry_run, created_at,"
        " updated_at, error, provider_status FROM notifications WHERE incident_id = ANY(%s)"
        " ORDER BY id", (ids,),
    )).fetchall()
    events = await (await conn.execute(
        "SELECT id, incident_id, at, kind, detail FROM incident_timeline"
        " WHERE incident_id = ANY(%s) ORDER BY id", (ids,),
    )).fetchall()
    out = []
    for r in rows:
        item = dict(r)
        # Where the elder was at the press, relative to home (the page words it).
        where = locate(item.pop("location"), item.pop("home"), item["elder_name"])
        item["whereabouts"] = where.as_dict() if where else None
        item["notifications"] = [n for n in notes if n["incident_id"] == r["id"]]
        item["timeline"] = [e for e in events if e["incident_id"] == r["id"]]
        out.append(item)
    return out


async def incident_community(conn: AsyncConnection[Any], incident_id: str) -> str | None:
    row = await (await conn.execute(
        "SELECT community_id FROM incidents WHERE id = %s::uuid", (incident_id,)
    )).fetchone()
    return str(row["community_id"]) if row else None


async def timeline_since(
    conn: AsyncConnection[Any], after_id: int, principal: Principal,
) -> list[dict[str, Any]]:
    """Timeline rows after `after_id` of incidents in the principal's scope."""
    rows = await (await conn.execute(
        "SELECT t.id, t.incident_id, t.at, t.kind, t.detail, i.community_id"
        " FROM incident_timeline t JOIN incidents i ON i.id = t.incident_id"
        " WHERE t.id > %s AND (%s::text[] IS NULL OR i.community_id = ANY(%s))"
        " ORDER BY t.id LIMIT 1000", (after_id, scope(principal), scope(principal)),
    )).fetchall()
    return list(rows)


async def last_timeline_id(conn: AsyncConnection[Any]) -> int:
    row = await (await conn.execute("SELECT coalesce(max(id), 0) AS m FROM incident_timeline"))\
        .fetchone()
    return int(row["m"]) if row else 0


async def search_elders(
    conn: AsyncConnection[Any], principal: Principal, text: str, limit: int = 50,
) -> list[dict[str, Any]]:
    """Elders whose name, id, address or phone contains `text`, within scope."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await (await conn.execute(
        "SELECT e.id, e.name, e.address, e.lives_alone, e.care_level, e.community_id,"
        " c.name AS community_name,"
        " (SELECT count(*) FROM incidents i WHERE i.elder_id = e.id AND i.status <> 'resolved')"
        " AS open_incidents"
        " FROM elders e JOIN communities c ON c.id = e.community_id"
        " WHERE e.active AND (%(scope)s::text[] IS NULL OR e.community_id = ANY(%(scope)s))"
        " AND (e.name ILIKE %(p)s OR e.id ILIKE %(p)s OR e.address ILIKE %(p)s"
        "      OR e.phone ILIKE %(p)s)"
        " ORDER BY c.name, e.name LIMIT %(limit)s",
        {"scope": scope(principal), "p": pattern, "limit": limit},
    )).fetchall()
    return list(rows)


async def elder(
    conn: AsyncConnection[Any], principal: Principal, elder_id: str,
) -> dict[str, Any] | None:
    """The elder record with contacts (in calling order) and devices; None when unknown or out of
    scope. Personal fields are left out unless the role needs them."""
    row = await (await conn.execute(
        "SELECT e.*, c.name AS community_name, c.emergency_line FROM elders e"
        " JOIN communities c ON c.id = e.community_id WHERE e.id = %s", (elder_id,),
    )).fetchone()
    if row is None or not principal.can_see(row["community_id"]):
        return None
    item = {k: v for k, v in row.items()
            if k not in PERSONAL_FIELDS or (principal.sees_personal_data and k != "id_number")}
    # The resident ID number is masked for everyone, as in the registry API; a district admin
    # reveals it explicitly (and audited) through `reveal_id_number`.
    if principal.sees_personal_data:
        item["id_number_masked"] = mask_id_number(row.get("id_number") or "")
    item["personal_data_hidden"] = not principal.sees_personal_data
    item["contacts"] = list(await (await conn.execute(
        "SELECT priority, name, relation, phone, can_sms FROM contacts WHERE elder_id = %s"
        " ORDER BY priority", (elder_id,),
    )).fetchall())
    item["devices"] = list(await (await conn.execute(
        "SELECT id, kind, room, battery, last_seen, status, heartbeat_interval_s,"
        " " + _HEALTH + " FROM devices d WHERE elder_id = %s AND active ORDER BY kind, id",
        (LOW_BATTERY, elder_id),
    )).fetchall())
    # Where the elder has been today, relative to home (watches and canes that report it).
    item["positions"] = await recent_positions(conn, elder_id, row.get("home"))
    return item


# A device is offline when its status says so or it missed two heartbeats.
_HEALTH = """
(d.status = 'offline' OR (d.last_seen IS NOT NULL
  AND d.last_seen < now() - make_interval(secs => 2 * d.heartbeat_interval_s))) AS offline,
(d.battery IS NOT NULL AND d.battery < %s) AS low_battery
"""


async def device_problems(conn: AsyncConnection[Any], principal: Principal) -> list[dict[str, Any]]:
    """Offline and low-battery devices within scope, offline first, longest silent first."""
    rows = await (await conn.execute(
        "SELECT * FROM (SELECT d.id, d.kind, d.room, d.battery, d.last_seen, d.status,"
        " e.id AS elder_id, e.name AS elder_name, e.address, c.name AS community_name, "
        + _HEALTH +
        " FROM devices d JOIN elders e ON e.id = d.elder_id JOIN communities c"
        " ON c.id = e.community_id WHERE d.active"
        " AND (%s::text[] IS NULL OR e.community_id = ANY(%s))) x"
        " WHERE offline OR low_battery"
        " ORDER BY offline DESC, last_seen NULLS FIRST, battery NULLS LAST LIMIT 500",
        (LOW_BATTERY, scope(principal), scope(principal)),
    )).fetchall()
    return list(rows)
