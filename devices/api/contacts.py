"""An elder's emergency contacts, in calling order: list, add, change, remove."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter, HTTPException, Request

from devices import registry
from devices.api.common import (
    elder_row,
    field_error,
    not_found,
    record,
    transaction,
    validation_errors,
)
from devices.records import ContactIn, ContactPatch
from devices.registry import AsyncConn, Row
from foundation.security import CurrentPrincipal, Principal

router = APIRouter()


@router.get("/elders/{elder_id}/contacts")
async def list_contacts(
    request: Request, principal: CurrentPrincipal, elder_id: str,
) -> list[Row]:
    """An elder's emergency contacts in calling order."""
    async with transaction(request) as conn:
        elder = await elder_row(conn, principal, elder_id)
        await record(conn, request, principal, "view", "elder", elder_id,
                     elder["community_id"], what="contacts")
        return await (await conn.execute(
            "SELECT * FROM contacts WHERE elder_id = %s ORDER BY priority", (elder_id,),
        )).fetchall()


@router.post("/elders/{elder_id}/contacts", status_code=201)
async def create_contact(
    request: Request, principal: CurrentPrincipal, elder_id: str, body: ContactIn,
) -> Row:
    async with transaction(request) as conn:
        elder = await elder_row(conn, principal, elder_id)
        row = await registry.write_contact(conn, elder_id, body)
        if row is not None:
            await record(conn, request, principal, "create", "elder", elder_id,
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
        await record(conn, request, principal, "update", "elder", row["elder_id"], community_id,
                     what="contact", contact_id=contact_id, priority=row["priority"],
                     fields=sorted(changes))
        merged = {k: row[k] for k in ("priority", "name", "relation", "phone", "language")}
        merged["channels"] = None if "phone" in changes else row["channels"]
        merged.update(changes)
        try:
            contact = ContactIn.model_validate(merged)
        except ValueError as exc:
            raise HTTPException(422, validation_errors(exc)) from None
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


@router.post("/contacts/{contact_id}/deactivate")
async def deactivate_contact(
    request: Request, principal: CurrentPrincipal, contact_id: int,
) -> Row:
    """Remove a contact from the calling list (the row goes: the ladder reads every row)."""
    async with transaction(request) as conn:
        row, community_id = await _contact(conn, principal, contact_id)
        await conn.execute("DELETE FROM contacts WHERE id = %s", (contact_id,))
        await record(conn, request, principal, "deactivate", "elder", row["elder_id"],
                     community_id, what="contact", contact_id=contact_id,
                     priority=row["priority"])
    return {**row, "active": False}
