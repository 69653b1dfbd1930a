"""Communities: list, create, read, update, deactivate (district administrators manage them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from devices.api.common import (
    Limit,
    Offset,
    field_error,
    not_found,
    page,
    paged,
    record,
    scope,
    set_clause,
    transaction,
)
from devices.records import CommunityIn, CommunityPatch
from devices.registry import AsyncConn, Row
from foundation.security import CurrentPrincipal, Principal, require_district_admin

router = APIRouter()


MANAGE_COMMUNITIES = "only district administrators manage communities"


async def _community(conn: AsyncConn, principal: Principal, community_id: str) -> Row:
    row = await (await conn.execute(
        "SELECT * FROM communities WHERE id = %s", (community_id,))).fetchone()
    if row is None or not principal.can_see(community_id):
        raise not_found("community", community_id)
    return row


@router.get("/communities")
async def list_communities(
    request: Request, principal: CurrentPrincipal,
    q: str = "", include_inactive: bool = False, limit: int = Limit,
    offset: int = Offset,
) -> dict[str, Any]:
    """Communities this principal may see; `q` searches name, district and street."""
    where: list[str] = []
    params: list[Any] = []
    scope(principal, "id", where, params)
    if q:
        where.append("(name ILIKE %s OR district ILIKE %s OR street ILIKE %s)")
        params += [f"%{q}%"] * 3
    if not include_inactive:
        where.append("active")
    async with transaction(request) as conn:
        rows, total = await page(conn, "SELECT * FROM communities", where, params, "id",
                                 limit, offset)
    return paged(rows, total, limit, offset)


@router.post("/communities", status_code=201)
async def create_community(
    request: Request, principal: CurrentPrincipal, body: CommunityIn,
) -> Row:
    require_district_admin(principal, MANAGE_COMMUNITIES)
    if not principal.can_manage_district(body.district):
        raise field_error(403, "district", f"you manage district {principal.district!r} only")
    async with transaction(request) as conn:
        row = await (await conn.execute(
            "INSERT INTO communities (id, name, district, street, emergency_line, time_zone)"
            " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING *",
            (body.id, body.name, body.district, body.street, body.emergency_line,
             body.time_zone))).fetchone()
        if row is not None:
            await record(conn, request, principal, "create", "community", body.id, body.id)
    if row is None:
        raise field_error(409, "id", f"community {body.id!r} already exists")
    return row


@router.get("/communities/{community_id}")
async def get_community(
    request: Request, principal: CurrentPrincipal, community_id: str,
) -> Row:
    async with transaction(request) as conn:
        return await _community(conn, principal, community_id)


@router.patch("/communities/{community_id}")
async def update_community(
    request: Request, principal: CurrentPrincipal, community_id: str, body: CommunityPatch,
) -> Row:
    require_district_admin(principal, MANAGE_COMMUNITIES)
    changes = body.model_dump(exclude_unset=True)
    if "district" in changes and not principal.can_manage_district(changes["district"] or ""):
        raise field_error(403, "district", f"you manage district {principal.district!r} only")
    async with transaction(request) as conn:
        row = await _community(conn, principal, community_id)
        await record(conn, request, principal, "update", "community", community_id,
                     community_id, fields=sorted(changes))
        if changes:
            sets, values = set_clause(changes)
            row = await (await conn.execute(
                f"UPDATE communities SET {sets} WHERE id = %s RETURNING *",
                [*values, community_id])).fetchone() or row
    return row


@router.post("/communities/{community_id}/deactivate")
async def deactivate_community(
    request: Request, principal: CurrentPrincipal, community_id: str,
) -> Row:
    require_district_admin(principal, MANAGE_COMMUNITIES)
    async with transaction(request) as conn:
        await _community(conn, principal, community_id)
        active = await (await conn.execute(
            "SELECT count(*) AS n FROM elders WHERE community_id = %s AND active",
            (community_id,))).fetchone()
        if active and active["n"]:
            raise HTTPException(409, f"community {community_id!r} still has {active['n']}"
                                     " active elders: move or deactivate them first")
        row = await (await conn.execute(
            "UPDATE communities SET active = false WHERE id = %s RETURNING *",
            (community_id,))).fetchone()
        await record(conn, request, principal, "deactivate", "community", community_id,
                     community_id)
    assert row is not None
    return row
