"""Read models for the console: incidents with their elder, notifications and timeline."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

_INCIDENTS = """
SELECT i.id, i.elder_id, i.community_id, i.kind, i.severity, i.status, i.opened_at, i.event_time,
       i.acknowledged_at, i.acknowledged_by, i.resolved_at, i.outcome,
       e.name AS elder_name, e.address, e.lives_alone, c.name AS community_name
FROM incidents i JOIN elders e ON e.id = i.elder_id JOIN communities c ON c.id = i.community_id
WHERE (%(all)s OR i.status <> 'resolved') AND (%(id)s::uuid IS NULL OR i.id = %(id)s::uuid)
ORDER BY CASE i.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END,
         i.opened_at
LIMIT 200
"""


async def incidents(
    conn: AsyncConnection[Any], include_resolved: bool = False, incident_id: str | None = None,
) -> list[dict[str, Any]]:
    rows = await (await conn.execute(
        _INCIDENTS, {"all": include_resolved, "id": incident_id}
    )).fetchall()
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    notes = await (await conn.execute(
        "SELECT id, incident_id, channel, to_number, recipient, body, status, dry_run, created_at"
        " FROM notifications WHERE incident_id = ANY(%s) ORDER BY id", (ids,),
    )).fetchall()
    events = await (await conn.execute(
        "SELECT id, incident_id, at, kind, detail FROM incident_timeline"
        " WHERE incident_id = ANY(%s) ORDER BY id", (ids,),
    )).fetchall()
    out = []
    for r in rows:
        item = dict(r)
        item["notifications"] = [n for n in notes if n["incident_id"] == r["id"]]
        item["timeline"] = [e for e in events if e["incident_id"] == r["id"]]
        out.append(item)
    return out


async def timeline_since(conn: AsyncConnection[Any], after_id: int) -> list[dict[str, Any]]:
    rows = await (await conn.execute(
        "SELECT id, incident_id, at, kind, detail FROM incident_timeline WHERE id > %s"
        " ORDER BY id LIMIT 1000", (after_id,),
    )).fetchall()
    return list(rows)


async def last_timeline_id(conn: AsyncConnection[Any]) -> int:
    row = await (await conn.execute("SELECT coalesce(max(id), 0) AS m FROM incident_timeline"))\
        .fetchone()
    return int(row["m"]) if row else 0
