"""Admin API of the registry under /api/v1 (mounted by the console app).

Create, read, update and deactivate communities, elders, their contacts and away periods,
devices and staff; ledger import; device MQTT credentials. Every route is filtered by what the
principal may see (404 otherwise); ID numbers are always masked and medical notes are shown only
to those who may see personal data. Every read of personal data (elders, contacts, away periods,
staff, readings) and every write leaves an audit row (who, what, which elder, from where) in the
same transaction. Errors have FastAPI's shape: `detail` is a list of
`{"loc": [..., field], "msg": why}`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from psycopg.types.json import Jsonb

from devices import ledger_import, provisioning, registry
from devices.readings import history
from devices.records import (
    AwayPeriodIn,
    CommunityIn,
    CommunityPatch,
    ContactIn,
    ContactPatch,
    DeviceIn,
    DevicePatch,
    ElderIn,
    ElderLocation,
    ElderPatch,
    ElderThresholds,
    StaffIn,
    StaffPatch,
    mask_id_number,
)
from devices.registry import AsyncConn, Row
from foundation import audit
from foundation.security import CurrentPrincipal, Principal, require_district_admin

router = APIRouter(prefix="/api/v1", tags=["registry"])
router.include_router(history.router)

Limit = Query(50, ge=1, le=500)
Offset = Query(0, ge=0)


def field_error(status: int, field: str, msg: str) -> HTTPException:
    """An error naming the field at fault, shaped like FastAPI's validation errors."""
    return HTTPException(status, [{"loc": ["body", field], "msg": msg, "type": "value_error"}])


def not_found(what: str, key: str) -> HTTPException:
    return HTTPException(404, f"{what} {key!r} not found")


@asynccontextmanager
async def transaction(request: Request) -> AsyncIterator[AsyncConn]:
    """One connection from the app's pool, in one transaction committed on exit."""
    async with request.app.state.pool.connection() as conn, conn.transaction():
        yield conn


async def _publish_mqtt_auth(request: Request) -> None:
    """Re-render the broker's password file and ACL, after a commit that changed devices."""
    s = request.app.state.settings
    await asyncio.to_thread(provisioning.publish, s.database_url, s.mqtt_auth_dir)


async def _audit(
    conn: AsyncConn, request: Request, principal: Principal, action: str, object_type: str,
    object_id: str, community_id: str | None, **detail: Any,
) -> None:
    """One audit row for this request, committed with its transaction."""
    await audit.record(conn, principal, action, object_type, object_id, community_id,
                       audit.client_of(request), api="registry", **detail)


def _scope(principal: Principal, column: str, where: list[str], params: list[Any]) -> None:
    if principal.community_ids is not None:
        where.append(f"{column} = ANY(%s)")
        params.append(list(principal.community_ids))


async def _page(
    conn: AsyncConn, sql: str, where: list[str], params: list[Any], order: str,
    limit: int, offset: int,
) -> tuple[list[Row], int]:
    clause = " WHERE " + " AND ".join(where) if where else ""
    rows = await (await conn.execute(
        f"SELECT *, count(*) OVER () AS total FROM ({sql}) r{clause} ORDER BY {order}"
        " LIMIT %s OFFSET %s", [*params, limit, offset])).fetchall()
    total = rows[0].pop("total") if rows else 0
    for r in rows[1:]:
        r.pop("total")
    return rows, int(total)


def _paged(items: list[Row], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _set_clause(changes: dict[str, Any]) -> tuple[str, list[Any]]:
    return ", ".join(f"{k} = %s" for k in changes), [
        Jsonb(v) if isinstance(v, list | dict) else v for v in changes.values()]


# --- communities ------------------------------------------------------------------------------

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
    _scope(principal, "id", where, params)
    if q:
        where.append("(name ILIKE %s OR district ILIKE %s OR street ILIKE %s)")
        params += [f"%{q}%"] * 3
    if not include_inactive:
        where.append("active")
    async with transaction(request) as conn:
        rows, total = await _page(conn, "SELECT * FROM communities", where, params, "id",
                                  limit, offset)
    return _paged(rows, total, limit, offset)


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
            await _audit(conn, request, principal, "create", "community", body.id, body.id)
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
        await _audit(conn, request, principal, "update", "community", community_id,
                     community_id, fields=sorted(changes))
        if changes:
            sets, values = _set_clause(changes)
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
        await _audit(conn, request, principal, "deactivate", "community", community_id,
                     community_id)
    assert row is not None
    return row


# --- elders -----------------------------------------------------------------------------------

def elder_out(row: Row, principal: Principal) -> Row:
    """An elder as shown: ID number masked always, medical notes only to those allowed."""
    out = {k: v for k, v in row.items() if k not in ("id_number", "medical_notes")}
    out["id_number_masked"] = mask_id_number(row.get("id_number") or "")
    if principal.sees_personal_data:
        out["medical_notes"] = row.get("medical_notes", "")
    return out


async def _elder(conn: AsyncConn, principal: Principal, elder_id: str) -> Row:
    row = await (await conn.execute("SELECT * FROM elders WHERE id = %s", (elder_id,))).fetchone()
    if row is None or not principal.can_see(row["community_id"]):
        raise not_found("elder", elder_id)
    return row


async def _check_community(conn: AsyncConn, principal: Principal, community_id: str) -> None:
    row = await (await conn.execute(
        "SELECT active FROM communities WHERE id = %s", (community_id,))).fetchone()
    if row is None or not principal.can_see(community_id):
        raise field_error(422, "community_id", f"no community {community_id!r}")
    if not row["active"]:
        raise field_error(422, "community_id", f"community {community_id!r} is deactivated")


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
    _scope(principal, "community_id", where, params)
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
        rows, total = await _page(conn, "SELECT * FROM elders", where, params, "id",
                                  limit, offset)
        await _audit(conn, request, principal, "search" if q else "list", "elder", "",
                     community_id or None, q=q, elder_ids=[r["id"] for r in rows])
    return _paged([elder_out(r, principal) for r in rows], total, limit, offset)


@router.post("/elders", status_code=201)
async def create_elder(
    request: Request, principal: CurrentPrincipal, body: ElderIn,
) -> Row:
    async with transaction(request) as conn:
        await _check_community(conn, principal, body.community_id)
        row = await registry.write_elder(conn, body)
        if row is not None:
            await _audit(conn, request, principal, "create", "elder", body.id, body.community_id)
    if row is None:
        raise field_error(409, "id", f"elder {body.id!r} already exists")
    return elder_out(row, principal)


@router.get("/elders/{elder_id}")
async def get_elder(
    request: Request, principal: CurrentPrincipal, elder_id: str,
) -> Row:
    """One elder with contacts (in calling order), devices and away periods."""
    async with transaction(request) as conn:
        out = elder_out(await _elder(conn, principal, elder_id), principal)
        await _audit(conn, request, principal, "view", "elder", elder_id, out["community_id"],
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
        row = await _elder(conn, principal, elder_id)
        if "community_id" in changes:
            await _check_community(conn, principal, changes["community_id"])
        await _audit(conn, request, principal, "update", "elder", elder_id, row["community_id"],
                     fields=sorted(changes))
        if changes:
            sets, values = _set_clause(changes)
            row = await (await conn.execute(
                f"UPDATE elders SET {sets}, updated_at = now() WHERE id = %s RETURNING *",
                [*values, elder_id])).fetchone() or row
    if "community_id" in changes:  # the devices' topics moved with the elder
        await _publish_mqtt_auth(request)
    return elder_out(row, principal)


@router.put("/elders/{elder_id}/thresholds")
async def set_elder_thresholds(
    request: Request, principal: CurrentPrincipal, elder_id: str, body: ElderThresholds,
) -> Row:
    """Replace the elder's own detector limits (the detectors pick them up within a minute)."""
    async with transaction(request) as conn:
        elder = await _elder(conn, principal, elder_id)
        await _audit(conn, request, principal, "update", "elder", elder_id,
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
        await _elder(conn, principal, elder_id)
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
        elder = await _elder(conn, principal, elder_id)
        await _audit(conn, request, principal, "deactivate", "elder", elder_id,
                     elder["community_id"])
        row = await (await conn.execute(
            "UPDATE elders SET active = false, updated_at = now() WHERE id = %s RETURNING *",
            (elder_id,))).fetchone()
    await _publish_mqtt_auth(request)
    assert row is not None
    return elder_out(row, principal)


@router.get("/elders/{elder_id}/away-periods")
async def list_away_periods(
    request: Request, principal: CurrentPrincipal, elder_id: str,
) -> list[Row]:
    async with transaction(request) as conn:
        elder = await _elder(conn, principal, elder_id)
        await _audit(conn, request, principal, "view", "elder", elder_id,
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
        elder = await _elder(conn, principal, elder_id)
        await _audit(conn, request, principal, "update", "elder", elder_id,
                     elder["community_id"], fields=["away_periods"])
        row = await (await conn.execute(
            "INSERT INTO elder_away_periods (elder_id, starts_at, ends_at, reason)"
            " VALUES (%s,%s,%s,%s) RETURNING *",
            (elder_id, body.starts_at, body.ends_at, body.reason))).fetchone()
    assert row is not None
    return row


# --- contacts ---------------------------------------------------------------------------------

@router.get("/elders/{elder_id}/contacts")
async def list_contacts(
    request: Request, principal: CurrentPrincipal, elder_id: str,
) -> list[Row]:
    """An elder's emergency contacts in calling order."""
    async with transaction(request) as conn:
        elder = await _elder(conn, principal, elder_id)
        await _audit(conn, request, principal, "view", "elder", elder_id,
                     elder["community_id"], what="contacts")
        return await (await conn.execute(
            "SELECT * FROM contacts WHERE elder_id = %s ORDER BY priority", (elder_id,),
        )).fetchall()


@router.post("/elders/{elder_id}/contacts", status_code=201)
async def create_contact(
    request: Request, principal: CurrentPrincipal, elder_id: str, body: ContactIn,
) -> Row:
    async with transaction(request) as conn:
        elder = await _elder(conn, principal, elder_id)
        row = await registry.write_contact(conn, elder_id, body)
        if row is not None:
            await _audit(conn, request, principal, "create", "elder", elder_id,
                         elder["community_id"], what="contact", contact_id=row["id"],
                         priority=body.priority)
    if row is None:
        raise field_error(409, "priority", f"elder {elder_id!r} already has a contact with"
                                           f" priority {body.priority}")
    return row


async def _contact(conn: AsyncConn, principal: Principal, contact_id: int) -> tuple[Row, str]:
    """The contact and its elder's community."""
    row = await (await conn.execute(
        "SELECT c.*, e.community_id FROM contacts c JOIN elders e ON e.id = c.elder_id"
        " WHERE c.id = %s", (contact_id,))).fetchone()
    if row is None or not principal.can_see(row["community_id"]):
        raise not_found("contact", str(contact_id))
    return row, row.pop("community_id")


@router.patch("/contacts/{contact_id}")
async def update_contact(
    request: Request, principal: CurrentPrincipal, contact_id: int, body: ContactPatch,
) -> Row:
    """Change a contact; the number is re-validated and its SMS ability re-derived."""
    async with transaction(request) as conn:
        row, community_id = await _contact(conn, principal, contact_id)
        changes = body.model_dump(exclude_unset=True)
        # The new number is not copied into the log: the contacts table has it, the log says
        # who changed which field of whose contact, from where.
        await _audit(conn, request, principal, "update", "elder", row["elder_id"], community_id,
                     what="contact", contact_id=contact_id, priority=row["priority"],
                     fields=sorted(changes))
        merged = {k: row[k] for k in ("priority", "name", "relation", "phone", "language")}
        merged["channels"] = None if "phone" in changes else row["channels"]
        merged.update(changes)
        try:
            contact = ContactIn.model_validate(merged)
        except ValueError as exc:
            raise HTTPException(422, _errors(exc)) from None
        try:
            updated = await (await conn.execute(
                "UPDATE contacts SET priority = %s, name = %s, relation = %s, phone = %s,"
                " can_sms = %s, channels = %s, language = %s WHERE id = %s RETURNING *",
                (contact.priority, contact.name, contact.relation, contact.phone,
                 contact.can_sms, contact.channels, contact.language, contact_id),
            )).fetchone()
        except psycopg.errors.UniqueViolation:
            raise field_error(409, "priority", f"priority {contact.priority} is taken") from None
    assert updated is not None
    return updated


def _errors(exc: ValueError) -> list[dict[str, Any]]:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_context=False)]
    return [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]


@router.post("/contacts/{contact_id}/deactivate")
async def deactivate_contact(
    request: Request, principal: CurrentPrincipal, contact_id: int,
) -> Row:
    """Remove a contact from the calling list (the row goes: the ladder reads every row)."""
    async with transaction(request) as conn:
        row, community_id = await _contact(conn, principal, contact_id)
        await conn.execute("DELETE FROM contacts WHERE id = %s", (contact_id,))
        await _audit(conn, request, principal, "deactivate", "elder", row["elder_id"],
                     community_id, what="contact", contact_id=contact_id,
                     priority=row["priority"])
    return {**row, "active": False}


# --- devices ----------------------------------------------------------------------------------

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
    _scope(principal, "community_id", where, params)
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
        rows, total = await _page(conn, sql, where, params, "id", limit, offset)
    return _paged(rows, total, limit, offset)


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
        await _audit(conn, request, principal, "create", "device", body.id,
                     elder["community_id"], elder_id=body.elder_id)
    await _publish_mqtt_auth(request)
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
            sets, values = _set_clause(changes)
            await conn.execute(f"UPDATE devices SET {sets} WHERE id = %s", [*values, device_id])
        row = await _device(conn, principal, device_id)
        await _audit(conn, request, principal, "update", "device", device_id,
                     row["community_id"], elder_id=row["elder_id"], fields=sorted(changes))
    if "elder_id" in changes:
        await _publish_mqtt_auth(request)
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
        await _audit(conn, request, principal, "deactivate", "device", device_id,
                     row["community_id"], elder_id=row["elder_id"])
    await _publish_mqtt_auth(request)
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
        await _audit(conn, request, principal, "rotate_credentials", "device", device_id,
                     row["community_id"], elder_id=row["elder_id"])
    await _publish_mqtt_auth(request)
    return _mqtt_login(device_id, row["community_id"], password)


# --- staff ------------------------------------------------------------------------------------

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
    _scope(principal, "community_id", where, params)
    if community_id:
        where.append("community_id = %s")
        params.append(community_id)
    if q:
        where.append("(name ILIKE %s OR phone LIKE %s)")
        params += [f"%{q}%"] * 2
    if not include_inactive:
        where.append("active")
    async with transaction(request) as conn:
        rows, total = await _page(conn, "SELECT * FROM staff", where, params, "id",
                                  limit, offset)
        await _audit(conn, request, principal, "search" if q else "list", "staff", "",
                     community_id or None, q=q, staff_ids=[r["id"] for r in rows])
    return _paged(rows, total, limit, offset)


@router.post("/staff", status_code=201)
async def create_staff(
    request: Request, principal: CurrentPrincipal, body: StaffIn,
) -> Row:
    async with transaction(request) as conn:
        if body.community_id:
            await _check_community(conn, principal, body.community_id)
        elif principal.community_ids is not None:
            raise HTTPException(403, "only district administrators add street-level staff")
        row = await (await conn.execute(
            "INSERT INTO staff (id, community_id, name, phone, role, scope, street, duty_roster,"
            " on_duty) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING *",
            (body.id, body.community_id, body.name, body.phone, body.role, body.scope,
             body.street, Jsonb(body.model_dump(mode="json")["duty_roster"]), body.on_duty),
        )).fetchone()
        if row is not None:
            await _audit(conn, request, principal, "create", "staff", body.id, body.community_id)
    if row is None:
        raise field_error(409, "id", f"staff member {body.id!r} already exists")
    return row


@router.get("/staff/{staff_id}")
async def get_staff(
    request: Request, principal: CurrentPrincipal, staff_id: str,
) -> Row:
    async with transaction(request) as conn:
        row = await _staff(conn, principal, staff_id)
        await _audit(conn, request, principal, "view", "staff", staff_id, row["community_id"])
        return row


@router.patch("/staff/{staff_id}")
async def update_staff(
    request: Request, principal: CurrentPrincipal, staff_id: str, body: StaffPatch,
) -> Row:
    changes = body.model_dump(exclude_unset=True, mode="json")
    async with transaction(request) as conn:
        row = await _staff(conn, principal, staff_id)
        await _audit(conn, request, principal, "update", "staff", staff_id, row["community_id"],
                     fields=sorted(changes))
        if changes:
            sets, values = _set_clause(changes)
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
        await _audit(conn, request, principal, "deactivate", "staff", staff_id,
                     staff["community_id"])
        row = await (await conn.execute(
            "UPDATE staff SET active = false, on_duty = false WHERE id = %s RETURNING *",
            (staff_id,))).fetchone()
    assert row is not None
    return row


# --- ledger import ----------------------------------------------------------------------------

@router.post("/import", responses={422: {"description": "row-by-row errors; nothing imported"}})
async def import_ledger(
    request: Request, principal: CurrentPrincipal,
    filename: str = Query(..., description="ledger.csv or ledger.xlsx: the"
                                            " extension says the format"),
    kind: str = Query("", description="for CSV: elders, contacts or devices (default: guessed"
                      " from the header)"),
) -> dict[str, Any]:
    """Import a ledger sent as the raw request body, all or nothing."""
    content = await request.body()
    try:
        async with transaction(request) as conn:
            result = await ledger_import.import_ledger(conn, filename, content, kind, principal)
            await _audit(conn, request, principal, "import", "ledger", filename, None,
                         counts=result.counts)
    except ledger_import.LedgerRejected as exc:
        raise HTTPException(422, [e.as_detail() for e in exc.errors]) from None
    if result.counts.get("devices"):
        await _publish_mqtt_auth(request)
    return {"imported": result.counts, "mqtt": result.mqtt_logins}
