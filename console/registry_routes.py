"""What the console's record pages need beyond the registry's admin API (devices/api/, which
the pages call for create, edit, deactivate and credential rotation): the device list with its
health, contacts reordered in one step, an away period ended or cancelled, and the ledger
upload that imports the right rows and reports the wrong ones. Everything is scoped to the
caller's communities (404 otherwise), writes need a registry writer (`roles`), and every read
of personal data and every write leaves an audit row in the same transaction."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from console import queries
from console.incident_routes import as_json
from console.roles import require_registry_writer
from devices import ledger_import, provisioning
from foundation import audit
from foundation.security import CurrentPrincipal, Principal

router = APIRouter(prefix="/api/v1/console", tags=["console"])


class ContactOrder(BaseModel):
    """Every contact of the elder, by id, in the new calling order (first is called first)."""

    contact_ids: list[int] = Field(min_length=1, max_length=9)


async def _elder_community(conn: Any, principal: Principal, elder_id: str) -> str:
    row = await (await conn.execute(
        "SELECT community_id FROM elders WHERE id = %s", (elder_id,))).fetchone()
    if row is None or not principal.can_see(row["community_id"]):
        raise HTTPException(404, f"elder {elder_id!r} not found")
    return str(row["community_id"])


async def _publish_mqtt_auth(request: Request) -> None:
    """Re-render the broker's password file and ACL after a commit that added devices."""
    s = request.app.state.settings
    await asyncio.to_thread(provisioning.publish, s.database_url, s.mqtt_auth_dir)


@router.get("/devices")
async def devices(
    request: Request, principal: CurrentPrincipal,
    q: str = Query("", max_length=100, description="part of the id, serial, room or elder"),
    problems: bool = Query(False, description="only offline or low-battery devices"),
) -> Response:
    """Every active device in scope: status (online, offline: two missed heartbeats or the
    device said so; never seen), battery, last seen, and whether it has an MQTT login."""
    async with request.app.state.pool.connection() as conn:
        found = await queries.devices(conn, principal, q.strip(), problems)
    return Response(as_json({"devices": found, "low_battery": queries.LOW_BATTERY}),
                    media_type="application/json")


@router.put("/elders/{elder_id}/contacts/order")
async def reorder_contacts(
    elder_id: str, body: ContactOrder, request: Request, principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Renumber the elder's contacts 1, 2, 3... in the order given; the next incident's
    ladder calls them in that order. 422 unless the ids are exactly the elder's contacts."""
    require_registry_writer(principal)
    async with request.app.state.pool.connection() as conn, conn.transaction():
        community_id = await _elder_community(conn, principal, elder_id)
        rows = await (await conn.execute(
            "SELECT id, priority FROM contacts WHERE elder_id = %s ORDER BY priority FOR UPDATE",
            (elder_id,))).fetchall()
        if sorted(body.contact_ids) != sorted(r["id"] for r in rows):
            raise HTTPException(422, [{"loc": ["body", "contact_ids"], "ctx": {},
                                       "type": "contact_order_incomplete",
                                       "msg": "must list each of the elder's contacts once"}])
        before = [r["id"] for r in rows]
        # Two steps, since (elder_id, priority) is unique at every row update.
        await conn.execute("UPDATE contacts SET priority = -priority WHERE elder_id = %s",
                           (elder_id,))
        await conn.execute(
            "UPDATE contacts c SET priority = x.n FROM unnest(%s::bigint[]) WITH ORDINALITY"
            " AS x(id, n) WHERE c.id = x.id", (body.contact_ids,))
        await audit.record(conn, principal, "reorder_contacts", "elder", elder_id, community_id,
                           audit.client_of(request), before=before, after=body.contact_ids)
        contacts = await (await conn.execute(
            "SELECT id, priority, name, relation, phone, can_sms, channels, language"
            " FROM contacts WHERE elder_id = %s ORDER BY priority", (elder_id,))).fetchall()
    return {"elder_id": elder_id, "contacts": contacts}


@router.post("/away-periods/{period_id}/end")
async def end_away_period(
    period_id: int, request: Request, principal: CurrentPrincipal,
) -> dict[str, Any]:
    """The elder is back: an ongoing period ends now, one not yet begun is cancelled (deleted);
    one already over answers 409."""
    require_registry_writer(principal)
    async with request.app.state.pool.connection() as conn, conn.transaction():
        row = await (await conn.execute(
            "SELECT p.*, e.community_id, CASE WHEN p.starts_at > now() THEN 'upcoming'"
            " WHEN p.ends_at IS NULL OR p.ends_at > now() THEN 'ongoing' ELSE 'over' END AS state"
            " FROM elder_away_periods p JOIN elders e ON e.id = p.elder_id WHERE p.id = %s"
            " FOR UPDATE OF p", (period_id,))).fetchone()
        if row is None or not principal.can_see(row["community_id"]):
            raise HTTPException(404, f"away period {period_id} not found")
        if row["state"] == "over":
            raise HTTPException(409, f"away period {period_id} is already over")
        if row["state"] == "upcoming":
            await conn.execute("DELETE FROM elder_away_periods WHERE id = %s", (period_id,))
            action, ends_at = "cancel_away", None
        else:
            ended = await (await conn.execute(
                "UPDATE elder_away_periods SET ends_at = greatest(now(),"
                " starts_at + interval '1 microsecond') WHERE id = %s RETURNING ends_at",
                (period_id,))).fetchone()
            action, ends_at = "end_away", ended["ends_at"] if ended else None
        await audit.record(conn, principal, action, "elder", row["elder_id"],
                           row["community_id"], audit.client_of(request), period_id=period_id)
    return {"id": period_id, "elder_id": row["elder_id"],
            "state": "cancelled" if action == "cancel_away" else "ended", "ends_at": ends_at}


@router.post("/ledger", responses={422: {"description": "unreadable file; nothing imported"}})
async def upload_ledger(
    request: Request, principal: CurrentPrincipal,
    filename: str = Query(..., max_length=200, description="ledger.csv or ledger.xlsx"),
    kind: str = Query("", description="for CSV: elders, contacts or devices (default: guessed)"),
    skip_invalid: bool = Query(True, description="import the right rows and report the wrong"
                                                 " ones (false: all or nothing)"),
) -> dict[str, Any]:
    """Import a ledger sent as the raw body: which rows were written (sheet, row, id), which
    were not and why, and the MQTT logins of new devices (shown in this answer only)."""
    require_registry_writer(principal)
    content = await request.body()
    try:
        async with request.app.state.pool.connection() as conn, conn.transaction():
            result = await ledger_import.import_ledger(conn, filename, content, kind, principal,
                                                       skip_invalid=skip_invalid)
            await audit.record(conn, principal, "import", "ledger", filename, None,
                               audit.client_of(request), counts=result.counts,
                               rejected_rows=len(result.skipped))
    except ledger_import.LedgerRejected as exc:
        raise HTTPException(422, [e.as_detail() for e in exc.errors]) from None
    if result.counts.get("devices"):
        await _publish_mqtt_auth(request)
    return {"imported": result.counts,
            "rows": [{"sheet": k, "row": n, "id": i}
                     for k, rows in result.rows.items() for n, i in rows],
            "errors": [e.as_detail() for e in result.skipped],
            "mqtt": result.mqtt_logins}
