"""The incident API of the console: the board, one incident and staff actions (claim,
acknowledge, resolve; the live stream is in `live`), all limited to the caller's communities
and all audited."""

from __future__ import annotations

import json
from typing import Any, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from console import queries
from dispatcher import lifecycle
from dispatcher.incidents import timeline
from foundation import audit
from foundation.config import Settings
from foundation.security import CurrentPrincipal, Principal

router = APIRouter()

Outcome = Literal["help_sent", "false_alarm", "transferred_120_119", "elder_fine"]


def as_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


class Acknowledge(BaseModel):
    note: str = Field("", max_length=2000)


class Resolve(BaseModel):
    outcome: Outcome
    notes: str = Field("", max_length=4000)


async def _visible(conn: Any, principal: Principal, incident_id: str, request: Request) -> str:
    """The incident's community; 404 (and an audit row) when unknown or out of scope, so staff
    of another community cannot even learn that it exists."""
    try:
        community = await queries.incident_community(conn, incident_id)
    except psycopg.errors.InvalidTextRepresentation:
        raise HTTPException(404, "no such incident") from None
    if community is None or not principal.can_see(community):
        await conn.rollback()
        await audit.record(conn, principal, "denied", "incident", incident_id, community,
                           audit.client_of(request))
        await conn.commit()
        raise HTTPException(404, "no such incident")
    return community


@router.get("/api/v1/incidents")
async def list_incidents(
    request: Request, principal: CurrentPrincipal, include_resolved: bool = False,
) -> Response:
    """The board: open incidents (or all) in scope, most severe and oldest first."""
    settings: Settings = request.app.state.settings
    async with request.app.state.pool.connection() as conn:
        items = await queries.incidents(conn, principal, include_resolved)
        last = await queries.last_timeline_id(conn)
        await audit.record_board_views(conn, principal, items, audit.client_of(request))
    return Response(as_json({"incidents": items, "last_event_id": last,
                             "dry_run": settings.dry_run,
                             "channel": settings.notify}),
                    media_type="application/json")


@router.get("/api/v1/incidents/{incident_id}")
async def get_incident(
    incident_id: str, request: Request, principal: CurrentPrincipal,
) -> Response:
    async with request.app.state.pool.connection() as conn:
        community = await _visible(conn, principal, incident_id, request)
        items = await queries.incidents(conn, principal, True, incident_id)
        await audit.record(conn, principal, "view", "incident", incident_id, community,
                           audit.client_of(request))
    return Response(as_json(items[0]), media_type="application/json")


@router.post("/api/v1/incidents/{incident_id}/claim")
async def claim(
    incident_id: str, request: Request, principal: CurrentPrincipal,
) -> dict[str, str]:
    """"I am on it": silences the console alarm for everyone; the escalation goes on until
    someone acknowledges."""
    async with request.app.state.pool.connection() as conn:
        community = await _visible(conn, principal, incident_id, request)
        cur = await conn.execute(
            "UPDATE incidents SET claimed_by = %s, claimed_at = now() WHERE id = %s"
            " AND status <> 'resolved' AND claimed_at IS NULL", (principal.name, incident_id),
        )
        if cur.rowcount == 0:
            raise HTTPException(409, "incident is already claimed or resolved")
        await timeline(conn, incident_id, "claimed", who=principal.name, by=principal.staff_id)
        await audit.record(conn, principal, "claim", "incident", incident_id, community,
                           audit.client_of(request))
    return {"status": "claimed"}


async def acknowledge_incident(
    conn: Any, incident_id: str, principal: Principal, note: str,
) -> bool:
    """Take responsibility (dispatcher.lifecycle cancels every pending step); the console alarm
    stops too. False if the incident is not open."""
    if not await lifecycle.acknowledge(conn, incident_id, principal.name, "console",
                                       by=principal.staff_id, note=note):
        return False
    await conn.execute(
        "UPDATE incidents SET claimed_by = coalesce(claimed_by, %s),"
        " claimed_at = coalesce(claimed_at, now()) WHERE id = %s", (principal.name, incident_id),
    )
    return True


@router.post("/api/v1/incidents/{incident_id}/acknowledge")
async def acknowledge(
    incident_id: str, request: Request, principal: CurrentPrincipal,
    body: Acknowledge | None = None,
) -> dict[str, str]:
    """Take responsibility: the escalation ladder stops (pending calls are cancelled)."""
    note = body.note if body else ""
    async with request.app.state.pool.connection() as conn:
        community = await _visible(conn, principal, incident_id, request)
        if not await acknowledge_incident(conn, incident_id, principal, note):
            raise HTTPException(409, "incident is not open")
        await audit.record(conn, principal, "acknowledge", "incident", incident_id, community,
                           audit.client_of(request), note=note)
    return {"status": "acknowledged"}


@router.post("/api/v1/incidents/{incident_id}/resolve")
async def resolve(
    incident_id: str, body: Resolve, request: Request,
    principal: CurrentPrincipal,
) -> dict[str, str]:
    """Close the incident with what happened; pending steps are cancelled."""
    async with request.app.state.pool.connection() as conn:
        community = await _visible(conn, principal, incident_id, request)
        if not await lifecycle.resolve(conn, incident_id, body.outcome, body.notes,
                                       principal.name):
            raise HTTPException(409, "incident is already resolved")
        await audit.record(conn, principal, "resolve", "incident", incident_id, community,
                           audit.client_of(request), outcome=body.outcome, notes=body.notes)
    return {"status": "resolved"}
