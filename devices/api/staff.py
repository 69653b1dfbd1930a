"""Staff: list and search, create, read, update, deactivate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from psycopg.types.json import Jsonb

from devices.api.common import (
    Limit,
    Offset,
    check_community,
    field_error,
    not_found,
    page,
    paged,
    record,
    scope,
    set_clause,
    transaction,
)
from devices.records import StaffIn, StaffPatch
from devices.registry import AsyncConn, Row
from foundation.security import CurrentPrincipal, Principal

router = APIRouter()


async def _staff(conn: AsyncConn, principal: Principal, staff_id: str) -> Row:
    row = await (await conn.execute("SELECT * FROM staff WHERE id = %s", (staff_id,))).fetchone()
    if row is None or not (principal.community_ids is None or (
            row["community_id"] and principal.can_see(row["community_id"]))):
        raise not_found("staff member", staff_id)
    return row


@router.get("/staff")
async def list_staff(
    request: Request, principal: CurrentPrincipal,
    q: str = "", community_id: str = "", include_inactive: bool = False,
    limit: int = Limit, offset: int = Offset,
) -> dict[str, Any]:
    where: list[str] = []
    params: list[Any] = []
    scope(principal, "community_id", where, params)
    if community_id:
        where.append("community_id = %s")
        params.append(community_id)
    if q:
        where.append("(name ILIKE %s OR phone LIKE %s)")
        params += [f"%{q}%"] * 2
    if not include_inactive:
        where.append("active")
    async with transaction(request) as conn:
        rows, total = await page(conn, "SELECT * FROM staff", where, params, "id",
                                 limit, offset)
        await record(conn, request, principal, "search" if q else "list", "staff", "",
                     community_id or None, q=q, staff_ids=[r["id"] for r in rows])
    return paged(rows, total, limit, offset)


@router.post("/staff", status_code=201)
async def create_staff(
    request: Request, principal: CurrentPrincipal, body: StaffIn,
) -> Row:
    async with transaction(request) as conn:
        if body.community_id:
            await check_community(conn, principal, body.community_id)
        elif principal.community_ids is not None:
            raise HTTPException(403, "only district administrators add street-level staff")
        row = await (await conn.execute(
            "INSERT INTO staff (id, community_id, name, phone, role, scope, street, duty_roster,"
            " on_duty) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING *",
            (body.id, body.community_id, body.name, body.phone, body.role, body.scope,
             body.street, Jsonb(body.model_dump(mode="json")["duty_roster"]), body.on_duty),
        )).fetchone()
        if row is not None:
            await record(conn, request, principal, "create", "staff", body.id, body.community_id)
    if row is None:
        raise field_error(409, "id", f"staff member {body.id!r} already exists")
    return row


@router.get("/staff/{staff_id}")
async def get_staff(
    request: Request, principal: CurrentPrincipal, staff_id: str,
) -> Row:
    async with transaction(request) as conn:
        row = await _staff(conn, principal, staff_id)
        await record(conn, request, principal, "view", "staff", staff_id, row["community_id"])
        return row


@router.patch("/staff/{staff_id}")
async def update_staff(
    request: Request, principal: CurrentPrincipal, staff_id: str, body: StaffPatch,
) -> Row:
    changes = body.model_dump(exclude_unset=True, mode="json")
    async with transaction(request) as conn:
        row = await _staff(conn, principal, staff_id)
        await record(conn, request, principal, "update", "staff", staff_id, row["community_id"],
                     fields=sorted(changes))
        if changes:
            sets, values = set_clause(changes)
            row = await (await conn.execute(
                f"UPDATE staff SET {sets} WHERE id = %s RETURNING *",
                [*values, staff_id])).fetchone() or row
    return row


@router.post("/staff/{staff_id}/deactivate")
async def deactivate_staff(
    request: Request, principal: CurrentPrincipal, staff_id: str,
) -> Row:
    async with transaction(request) as conn:
        staff = await _staff(conn, principal, staff_id)
        await record(conn, request, principal, "deactivate", "staff", staff_id,
                     staff["community_id"])
        row = await (await conn.execute(
            "UPDATE staff SET active = false, on_duty = false WHERE id = %s RETURNING *",
            (staff_id,))).fetchone()
    assert row is not None
    return row
