"""Elder search, the elder record, device health and the elder's charts, for the console.
Read models live under /api/v1/console/ so they never collide with the registry's admin API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from fastapi import APIRouter, HTTPException, Request, Response

from console import charts, queries
from console.incident_routes import as_json
from foundation import audit
from foundation.security import SESSION_COOKIE, CurrentPrincipal, require_district_admin

router = APIRouter()


@router.get("/api/v1/console/elders")
async def search(
    request: Request, principal: CurrentPrincipal, q: str = "",
) -> Response:
    async with request.app.state.pool.connection() as conn:
        found = await queries.search_elders(conn, principal, q.strip()[:100])
        await audit.record(conn, principal, "search", "elder", q.strip()[:100], None,
                           audit.client_of(request), results=len(found))
    return Response(as_json({"elders": found}), media_type="application/json")


@router.get("/api/v1/console/elders/{elder_id}")
async def elder(
    elder_id: str, request: Request, principal: CurrentPrincipal,
) -> Response:
    """The elder page's record (audited); 404 when out of the caller's scope."""
    async with request.app.state.pool.connection() as conn:
        item = await queries.elder(conn, principal, elder_id)
        if item is None:
            await audit.record(conn, principal, "denied", "elder", elder_id, None,
                               audit.client_of(request))
            await conn.commit()
            raise HTTPException(404, "no such elder")
        item["incidents"] = await queries.incidents(conn, principal, True, elder_id=elder_id)
        await audit.record(conn, principal, "view", "elder", elder_id, item["community_id"],
                           audit.client_of(request),
                           personal_data=principal.sees_personal_data)
    return Response(as_json(item), media_type="application/json")


@router.post("/api/v1/console/elders/{elder_id}/reveal-id-number")
async def reveal_id_number(
    elder_id: str, request: Request, principal: CurrentPrincipal,
) -> dict[str, str]:
    """The full resident ID number, for a district admin who needs it (e.g. to match a hospital
    record); each reveal is its own audit row. Everyone else sees only the masked number."""
    require_district_admin(principal, "only a district admin may reveal a resident ID number")
    async with request.app.state.pool.connection() as conn:
        row = await (await conn.execute(
            "SELECT community_id, id_number FROM elders WHERE id = %s", (elder_id,))).fetchone()
        if row is None or not principal.can_see(row["community_id"]):
            raise HTTPException(404, "no such elder")
        await audit.record(conn, principal, "reveal_id_number", "elder", elder_id,
                           row["community_id"], audit.client_of(request))
    return {"elder_id": elder_id, "id_number": row["id_number"]}


@router.get("/api/v1/console/devices/problems")
async def device_problems(
    request: Request, principal: CurrentPrincipal,
) -> Response:
    async with request.app.state.pool.connection() as conn:
        found = await queries.device_problems(conn, principal)
    return Response(as_json({"devices": found}), media_type="application/json")


@router.get("/api/v1/console/elders/{elder_id}/charts/{chart}")
async def chart(
    elder_id: str, chart: str, request: Request, principal: CurrentPrincipal,
    days: int = charts.DAYS,
) -> Response:
    """Data of the vital signs (`vitals`, with the alert limits) or daily activity (`activity`)
    chart over the last `days` days (1, 7, 30 or 90), for the page to draw."""
    if chart not in ("vitals", "activity"):
        raise HTTPException(404, "charts: vitals, activity")
    if days not in charts.RANGES:
        raise HTTPException(422, f"days: one of {', '.join(map(str, charts.RANGES))}")
    async with request.app.state.pool.connection() as conn:
        item = await queries.elder(conn, principal, elder_id)
        if item is None:
            raise HTTPException(404, "no such elder")
        await audit.record(conn, principal, "view_chart", "elder", elder_id, item["community_id"],
                           audit.client_of(request), chart=chart)
    now = datetime.now(UTC)
    since = now - timedelta(days=days)
    # The registry's history API, in-process, with the viewer's own session and scope.
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://console",
        cookies={SESSION_COOKIE: request.cookies.get(SESSION_COOKIE, "")},
    ) as client:
        readings = await charts.history(client, elder_id, "readings", since, now)
        rollups = [] if chart == "vitals" else \
            await charts.history(client, elder_id, "rollups", since, now)
    overrides = item.get("detector_thresholds") if isinstance(
        item.get("detector_thresholds"), dict) else None
    body = charts.vitals(readings, since, now, overrides) if chart == "vitals" else \
        charts.activity(rollups, readings, since, now)
    return Response(as_json(body), media_type="application/json",
                    headers={"Cache-Control": "private, max-age=60"})
