"""History for charts: an elder's or a device's readings and hourly rollups over a time range.

Contract (the console's charts rely on it):
`GET /api/v1/elders/{id}/readings?type=&since=&until=` -> `{"readings": [{"device_id", "type",
"event_time", "data"}]}`; `.../rollups` -> `{"rollups": [{"hour", "type", "count", "avg": {field:
value}, "min": {...}, "max": {...}}]}`; the same under `/api/v1/devices/{id}/`. `since` defaults
to 24 hours before `until`, `until` to now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from foundation import audit
from foundation.security import CurrentPrincipal, Principal

router = APIRouter(tags=["history"])

MAX_READINGS = 50_000

_READINGS = """
SELECT device_id, type, event_time, data FROM readings
WHERE {key} = %s AND event_time >= %s AND event_time < %s AND (%s = '' OR type = %s)
ORDER BY event_time, device_id LIMIT %s
"""
_ROLLUPS = """
SELECT hour, type, field, sum(n)::bigint AS n, sum(sum) AS sum, min(min) AS min, max(max) AS max
FROM readings_hourly
WHERE {key} = %s AND hour >= date_trunc('hour', %s::timestamptz, 'UTC') AND hour < %s
  AND (%s = '' OR type = %s)
GROUP BY hour, type, field ORDER BY hour, type, field
"""


def window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """The asked time range, aware UTC; 24 hours up to now by default."""
    end = until or datetime.now(UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    start = since or end - timedelta(hours=24)
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    if start >= end:
        raise HTTPException(422, [{"loc": ["query", "since"], "msg": "since must be before"
                                   " until", "type": "value_error"}])
    return start, end


async def _community_of(
    request: Request, principal: Principal, what: str, key: str, data: str,
) -> None:
    """404 unless the elder (or the device's elder) is in the principal's scope; the read of
    `data` (readings, rollups) is audited under the elder's id."""
    sql = ("SELECT id AS elder_id, community_id FROM elders WHERE id = %s" if what == "elder"
           else "SELECT e.id AS elder_id, e.community_id FROM devices d"
           " JOIN elders e ON e.id = d.elder_id WHERE d.id = %s")
    async with request.app.state.pool.connection() as conn:
        row = await (await conn.execute(sql, (key,))).fetchone()
        if row is None or not principal.can_see(row["community_id"]):
            raise HTTPException(404, f"{what} {key!r} not found")
        await audit.record(conn, principal, "view", "elder", row["elder_id"],
                           row["community_id"], audit.client_of(request), api="registry",
                           what=data, **({"device_id": key} if what == "device" else {}))


def rollups_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-field rollup rows folded into one chart point per (hour, type)."""
    points: dict[tuple[datetime, str], dict[str, Any]] = {}
    for r in rows:
        p = points.setdefault((r["hour"], r["type"]), {
            "hour": r["hour"], "type": r["type"], "count": 0, "avg": {}, "min": {}, "max": {}})
        if r["field"] == "":
            p["count"] = int(r["n"])
        else:
            p["avg"][r["field"]] = r["sum"] / r["n"]
            p["min"][r["field"]] = r["min"]
            p["max"][r["field"]] = r["max"]
    return list(points.values())


async def _readings(request: Request, key: str, value: str, type_: str, since: datetime | None,
                    until: datetime | None, limit: int) -> dict[str, Any]:
    start, end = window(since, until)
    async with request.app.state.pool.connection() as conn:
        rows = await (await conn.execute(_READINGS.format(key=key), (
            value, start, end, type_, type_, limit))).fetchall()
    return {"readings": rows}


async def _rollups(request: Request, key: str, value: str, type_: str, since: datetime | None,
                   until: datetime | None) -> dict[str, Any]:
    start, end = window(since, until)
    async with request.app.state.pool.connection() as conn:
        rows = await (await conn.execute(_ROLLUPS.format(key=key), (
            value, start, end, type_, type_))).fetchall()
    return {"rollups": rollups_of(rows)}


TypeQ = Query("", alias="type", description="message type (bp, hr, glucose...); all if empty")
Limit = Query(10_000, ge=1, le=MAX_READINGS)


@router.get("/elders/{elder_id}/readings")
async def elder_readings(
    request: Request, principal: CurrentPrincipal,
    elder_id: str, type_: str = TypeQ, since: datetime | None = None,
    until: datetime | None = None, limit: int = Limit,
) -> dict[str, Any]:
    """An elder's readings from all their devices, oldest first."""
    await _community_of(request, principal, "elder", elder_id, "readings")
    return await _readings(request, "elder_id", elder_id, type_, since, until, limit)


@router.get("/elders/{elder_id}/rollups")
async def elder_rollups(
    request: Request, principal: CurrentPrincipal,
    elder_id: str, type_: str = TypeQ, since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """An elder's hourly count, average, minimum and maximum of each numeric field."""
    await _community_of(request, principal, "elder", elder_id, "rollups")
    return await _rollups(request, "elder_id", elder_id, type_, since, until)


@router.get("/devices/{device_id}/readings")
async def device_readings(
    request: Request, principal: CurrentPrincipal,
    device_id: str, type_: str = TypeQ, since: datetime | None = None,
    until: datetime | None = None, limit: int = Limit,
) -> dict[str, Any]:
    """One device's readings, oldest first."""
    await _community_of(request, principal, "device", device_id, "readings")
    return await _readings(request, "device_id", device_id, type_, since, until, limit)


@router.get("/devices/{device_id}/rollups")
async def device_rollups(
    request: Request, principal: CurrentPrincipal,
    device_id: str, type_: str = TypeQ, since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """One device's hourly rollups."""
    await _community_of(request, principal, "device", device_id, "rollups")
    return await _rollups(request, "device_id", device_id, type_, since, until)
