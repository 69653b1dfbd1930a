"""Elders: list and search, create, read (with contacts, devices, away periods), update,
detector thresholds, home and safe zone, deactivate, away periods."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from psycopg.types.json import Jsonb

from devices import registry
from devices.api.common import (
    Limit,
    Offset,
    check_community,
    elder_row,
    field_error,
    page,
    paged,
    publish_mqtt_auth,
    record,
    scope,
    set_clause,
    transaction,
)
from devices.records import (
    AwayPeriodIn,
    ElderIn,
    ElderLocation,
    ElderPatch,
    ElderThresholds,
    mask_id_number,
)
from devices.registry import Row
from foundation.security import CurrentPrincipal, Principal

router = APIRouter()


def elder_out(row: Row, principal: Principal) -> Row:
    """An elder as shown: ID number masked always, medical notes only to those allowed."""
    out = {k: v for k, v in row.items() if k not in ("id_number", "medical_notes")}
    out["id_number_masked"] = mask_id_number(row.get("id_number") or "")
    if principal.sees_personal_data:
        out["medical_notes"] = row.get("medical_notes", "")
    return out


@router.get("/elders")
async def list_elders(
    request: Request, principal: CurrentPrincipal,
    q: str = Query("", description="part of a name, or of the elder's or a"
                                     " contact's phone number"),
    community_id: str = "", include_inactive: bool = False, limit: int = Limit,
    offset: int = Offset,
) -> dict[str, Any]:
    """Elders this principal may see, by community and name/phone search, paginated."""
    where: list[str] = []
    params: list[Any] = []
    scope(principal, "community_id", where, params)
    if community_id:
        where.append("community_id = %s")
        params.append(community_id)
    if q:
        where.append("(name ILIKE %s OR phone LIKE %s OR id IN"
                     " (SELECT elder_id FROM contacts WHERE phone LIKE %s OR name ILIKE %s))")
        params += [f"%{q}%"] * 4
    if not include_inactive:
        where.append("active")
    async with transaction(request) as conn:
        rows, total = await page(conn, "SELECT * FROM elders", where, params, "id",
                                 limit, offset)
        await record(conn, request, principal, "search" if q else "list", "elder", "",
                     community_id or None, q=q, elder_ids=[r["id"] for r in rows])
    return paged([elder_out(r, principal) for r in rows], total, limit, offset)


@router.post("/elders", status_code=201)
async def create_elder(
    request: Request, principal: CurrentPrincipal, body: ElderIn,
) -> Row:
    async with transaction(request) as conn:
        await check_community(conn, principal, body.community_id)
        row = await registry.write_elder(conn, body)
        if row is not None:
            await record(conn, request, principal, "create", "elder", body.id, body.community_id)
    if row is None:
        raise field_error(409, "id", f"elder {body.id!r} already exists")
    return elder_out(row, principal)


@router.get("/elders/{elder_id}")
async def get_elder(
    request: Request, principal: CurrentPrincipal, elder_id: str,
) -> Row:
    """One elder with contacts (in calling order), devices and away periods."""
    async with transaction(request) as conn:
        out = elder_out(await elder_row(conn, principal, elder_id), principal)
        await record(conn, request, principal, "view", "elder", elder_id, out["community_id"],
                     what="record")
        out["contacts"] = await (await conn.execute(
            "SELECT * FROM contacts WHERE elder_id = %s ORDER BY priority", (elder_id,),
        )).fetchall()
        out["devices"] = await (await conn.execute(
            "SELECT * FROM devices WHERE elder_id = %s AND active ORDER BY id", (elder_id,),
        )).fetchall()
        out["away_periods"] = await (await conn.execute(
            "SELECT * FROM elder_away_periods WHERE elder_id = %s ORDER BY starts_at",
            (elder_id,))).fetchall()
    return out


@router.patch("/elders/{elder_id}")
async def update_elder(
    request: Request, principal: CurrentPrincipal, elder_id: str, body: ElderPatch,
) -> Row:
    changes = body.model_dump(exclude_unset=True)
    async with transaction(request) as conn:
        row = await elder_row(conn, principal, elder_id)
        if "community_id" in changes:
            await check_community(conn, principal, changes["community_id"])
        await record(conn, request, principal, "update", "elder", elder_id, row["community_id"],
                     fields=sorted(changes))
        if changes:
            sets, values = set_clause(changes)
            row = await (await conn.execute(
                f"UPDATE elders SET {sets}, updated_at = now() WHERE id = %s RETURNING *",
                [*values, elder_id])).fetchone() or row
    if "community_id" in changes:  # the devices' topics moved with the elder
        await publish_mqtt_auth(request)
    return elder_out(row, principal)


@router.put("/elders/{elder_id}/thresholds")
async def set_elder_thresholds(
    request: Request, principal: CurrentPrincipal, elder_id: str, body: ElderThresholds,
) -> Row:
    """Replace the elder's own detector limits (the detectors pick them up within a minute)."""
    async with transaction(request) as conn:
        elder = await elder_row(conn, principal, elder_id)
        await record(conn, request, principal, "update", "elder", elder_id,
                     elder["community_id"], fields=["detector_thresholds"])
        row = await (await conn.execute(
            "UPDATE elders SET detector_thresholds = %s, updated_at = now() WHERE id = %s"
            " RETURNING *", (Jsonb(body.model_dump(exclude_none=True)), elder_id))).fetchone()
    assert row is not None
    return elder_out(row, principal)


@router.put("/elders/{elder_id}/location")
async def set_elder_location(
    request: Request, principal: CurrentPrincipal, elder_id: str, body: ElderLocation,
) -> Row:
    """Set (or clear, with nulls) the elder's home position and safe zone; positions may be
    given in GCJ-02 as copied from a Chinese map app and are stored as WGS-84. The detectors
    pick them up within a minute."""
    home, zone = body.stored()
    async with transaction(request) as conn:
        await elder_row(conn, principal, elder_id)
        row = await (await conn.execute(
            "UPDATE elders SET home = %s, safe_zone = %s, updated_at = now() WHERE id = %s"
            " RETURNING *", (Jsonb(home) if home else None, Jsonb(zone) if zone else None,
                             elder_id))).fetchone()
    assert row is not None
    return elder_out(row, principal)


@router.post("/elders/{elder_id}/deactivate")
async def deactivate_elder(
    request: Request, principal: CurrentPrincipal, elder_id: str,
) -> Row:
    """The elder stops being monitored; their devices can no longer log in."""
    async with transaction(request) as conn:
        elder = await elder_row(conn, principal, elder_id)
        await record(conn, request, principal, "deactivate", "elder", elder_id,
                     elder["community_id"])
        row = await (await conn.execute(
            "UPDATE elders SET active = false, updated_at = now() WHERE id = %s RETURNING *",
            (elder_id,))).fetchone()
    await publish_mqtt_auth(request)
    assert row is not None
    return elder_out(row, principal)


@router.get("/elders/{elder_id}/away-periods")
async def list_away_periods(
    request: Request, principal: CurrentPrincipal, elder_id: str,
) -> list[Row]:
    async with transaction(request) as conn:
        elder = await elder_row(conn, principal, elder_id)
        await record(conn, request, principal, "view", "elder", elder_id,
                     elder["community_id"], what="away_periods")
        return await (await conn.execute(
            "SELECT * FROM elder_away_periods WHERE elder_id = %s ORDER BY starts_at",
            (elder_id,))).fetchall()


@router.post("/elders/{elder_id}/away-periods", status_code=201)
async def add_away_period(
    request: Request, principal: CurrentPrincipal, elder_id: str, body: AwayPeriodIn,
) -> Row:
    """A stay away from home (hospital, family): inactivity then is expected."""
    async with transaction(request) as conn:
        elder = await elder_row(conn, principal, elder_id)
        await record(conn, request, principal, "update", "elder", elder_id,
                     elder["community_id"], fields=["away_periods"])
        row = await (await conn.execute(
            "INSERT INTO elder_away_periods (elder_id, starts_at, ends_at, reason)"
            " VALUES (%s,%s,%s,%s) RETURNING *",
            (elder_id, body.starts_at, body.ends_at, body.reason))).fetchone()
    assert row is not None
    return row
