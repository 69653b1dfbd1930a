"""Devices: list, register (with their MQTT login), read, update, deactivate, new credentials."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from devices import provisioning, registry
from devices.api.common import (
    Limit,
    Offset,
    field_error,
    not_found,
    page,
    paged,
    publish_mqtt_auth,
    record,
    scope,
    set_clause,
    transaction,
)
from devices.records import DeviceIn, DevicePatch
from devices.registry import AsyncConn, Row
from foundation.security import CurrentPrincipal, Principal

router = APIRouter()


async def _device(conn: AsyncConn, principal: Principal, device_id: str) -> Row:
    row = await (await conn.execute(
        "SELECT d.*, e.community_id, (c.device_id IS NOT NULL) AS has_credentials"
        " FROM devices d JOIN elders e ON e.id = d.elder_id"
        " LEFT JOIN device_credentials c ON c.device_id = d.id WHERE d.id = %s",
        (device_id,))).fetchone()
    if row is None or not principal.can_see(row["community_id"]):
        raise not_found("device", device_id)
    return row


async def _check_elder(conn: AsyncConn, principal: Principal, elder_id: str) -> Row:
    row = await (await conn.execute(
        "SELECT community_id, active FROM elders WHERE id = %s", (elder_id,))).fetchone()
    if row is None or not principal.can_see(row["community_id"]):
        raise field_error(422, "elder_id", f"no elder {elder_id!r}")
    if not row["active"]:
        raise field_error(422, "elder_id", f"elder {elder_id!r} is deactivated")
    return row


def _mqtt_login(device_id: str, community_id: str, password: str) -> dict[str, str]:
    return {"username": provisioning.device_username(device_id), "password": password,
            "topic_prefix": provisioning.device_topic_prefix(community_id, device_id) + "/"}


@router.get("/devices")
async def list_devices(
    request: Request, principal: CurrentPrincipal,
    q: str = Query("", description="part of the id or serial number"),
    community_id: str = "", elder_id: str = "", kind: str = "", include_inactive: bool = False,
    limit: int = Limit, offset: int = Offset,
) -> dict[str, Any]:
    where: list[str] = []
    params: list[Any] = []
    scope(principal, "community_id", where, params)
    for column, value in (("community_id", community_id), ("elder_id", elder_id),
                          ("kind", kind)):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    if q:
        where.append("(id ILIKE %s OR serial ILIKE %s)")
        params += [f"%{q}%"] * 2
    if not include_inactive:
        where.append("active")
    sql = "SELECT d.*, e.community_id FROM devices d JOIN elders e ON e.id = d.elder_id"
    async with transaction(request) as conn:
        rows, total = await page(conn, sql, where, params, "id", limit, offset)
    return paged(rows, total, limit, offset)


@router.post("/devices", status_code=201)
async def create_device(
    request: Request, principal: CurrentPrincipal, body: DeviceIn,
) -> Row:
    """Register a device and issue its MQTT login. The password is in this answer only."""
    async with transaction(request) as conn:
        elder = await _check_elder(conn, principal, body.elder_id)
        row = await registry.write_device(conn, body)
        if row is None:
            raise field_error(409, "id", f"device {body.id!r} already exists")
        password, hashed = provisioning.new_credentials()
        await conn.execute(provisioning.ISSUE_SQL, (body.id, hashed))
        await record(conn, request, principal, "create", "device", body.id,
                     elder["community_id"], elder_id=body.elder_id)
    await publish_mqtt_auth(request)
    return {**row, "community_id": elder["community_id"],
            "mqtt": _mqtt_login(body.id, elder["community_id"], password)}


@router.get("/devices/{device_id}")
async def get_device(
    request: Request, principal: CurrentPrincipal, device_id: str,
) -> Row:
    async with transaction(request) as conn:
        return await _device(conn, principal, device_id)


@router.patch("/devices/{device_id}")
async def update_device(
    request: Request, principal: CurrentPrincipal, device_id: str, body: DevicePatch,
) -> Row:
    changes = body.model_dump(exclude_unset=True)
    async with transaction(request) as conn:
        await _device(conn, principal, device_id)
        if "elder_id" in changes:
            await _check_elder(conn, principal, changes["elder_id"])
        if changes:
            sets, values = set_clause(changes)
            await conn.execute(f"UPDATE devices SET {sets} WHERE id = %s", [*values, device_id])
        row = await _device(conn, principal, device_id)
        await record(conn, request, principal, "update", "device", device_id,
                     row["community_id"], elder_id=row["elder_id"], fields=sorted(changes))
    if "elder_id" in changes:
        await publish_mqtt_auth(request)
    return row


@router.post("/devices/{device_id}/deactivate")
async def deactivate_device(
    request: Request, principal: CurrentPrincipal, device_id: str,
) -> Row:
    """The device is no longer monitored and can no longer log in to the broker."""
    async with transaction(request) as conn:
        await _device(conn, principal, device_id)
        await conn.execute("UPDATE devices SET active = false WHERE id = %s", (device_id,))
        row = await _device(conn, principal, device_id)
        await record(conn, request, principal, "deactivate", "device", device_id,
                     row["community_id"], elder_id=row["elder_id"])
    await publish_mqtt_auth(request)
    return row


@router.post("/devices/{device_id}/credentials", status_code=201)
async def rotate_credentials(
    request: Request, principal: CurrentPrincipal, device_id: str,
) -> dict[str, str]:
    """Issue a new MQTT password (the old one stops working). Shown in this answer only."""
    async with transaction(request) as conn:
        row = await _device(conn, principal, device_id)
        if not row["active"]:
            raise HTTPException(409, f"device {device_id!r} is deactivated")
        password, hashed = provisioning.new_credentials()
        await conn.execute(provisioning.ISSUE_SQL, (device_id, hashed))
        await record(conn, request, principal, "rotate_credentials", "device", device_id,
                     row["community_id"], elder_id=row["elder_id"])
    await publish_mqtt_auth(request)
    return _mqtt_login(device_id, row["community_id"], password)
