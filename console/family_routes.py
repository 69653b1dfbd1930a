"""The family page: a notified contact follows the response to one incident from the link in
their SMS, with no login, and can say "我来处理" or "我已联系到老人".

The link (dispatcher/family.py) is the only credential: it opens one incident, as one contact,
until 24 h after resolution. The page shows nothing beyond that incident: no phone numbers, no
ID numbers, no other incidents. Every view and every action is audited as that contact."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from sse_starlette.sse import EventSourceResponse

from dispatcher import family, lifecycle
from dispatcher.incidents import timeline
from dispatcher.whereabouts import describe, incident_whereabouts
from foundation import audit, db
from foundation.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalogue, t

router = APIRouter(tags=["family"])

_STATIC = resources.files("console.static")
_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",  # the token must not leak to a map site
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"}
# Timeline rows a family member sees, each as a sentence without phone numbers.
_SHOWN = {"incident_opened", "alert_joined", "call", "sms", "claimed", "acknowledged",
          "resolved", "family_reached_elder", "realerted", "escalated"}
_POLL_S = 1.0


def _who(link: family.FamilyLink) -> str:
    return f"contact:{link.priority}@{link.incident_id}"


async def _link(request: Request, token: str) -> family.FamilyLink:
    async with request.app.state.pool.connection() as conn:
        link = await family.holder(conn, token)
    if link is None:
        raise HTTPException(404, "this link is not valid or has expired")
    return link


def _sentence(row: dict[str, Any], lang: str) -> str | None:
    kind, d = row["kind"], row["detail"] or {}
    if kind not in _SHOWN:
        return None
    if kind in ("call", "sms"):
        whom = t("family.staff", lang) if d.get("recipient") == "staff" else d.get("name", "")
        return t(f"family.{kind}", lang, name=whom, status=t(f"status.{d.get('status')}", lang))
    if kind in ("incident_opened", "alert_joined", "realerted"):
        key = "family.opened" if kind == "incident_opened" else f"family.{kind}"
        return t(key, lang, what=t(f"kind.{d.get('kind')}", lang))
    if kind == "resolved":
        return t("family.resolved", lang, outcome=t(f"outcome.{d.get('outcome')}", lang))
    return t(f"family.{kind}", lang, who=d.get("who", ""))


def labels(lang: str) -> dict[str, str]:
    """The page's own words (it is served without the console's translation route)."""
    table = catalogue(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
    return {k: v for k, v in table.items() if k.startswith("family.")}


async def state(conn: db.Connection, link: family.FamilyLink) -> dict[str, Any]:
    """What the page shows: the incident in the contact's language, and its timeline."""
    lang = link.language
    row = await (await conn.execute(
        "SELECT i.kind, i.status, i.event_time, i.acknowledged_by, i.acknowledged_via,"
        " i.resolved_at, i.outcome, e.name AS elder, c.name AS community"
        " FROM incidents i JOIN elders e ON e.id = i.elder_id"
        " JOIN communities c ON c.id = i.community_id WHERE i.id = %s",
        (link.incident_id,))).fetchone()
    assert row is not None
    claimed = await (await conn.execute(
        "SELECT detail ->> 'who' AS who FROM incident_timeline WHERE incident_id = %s"
        " AND kind = 'claimed' ORDER BY id DESC LIMIT 1", (link.incident_id,))).fetchone()
    where = await incident_whereabouts(conn, link.incident_id, row["elder"])
    rows = await _rows(conn, link.incident_id, 0)
    return {
        "language": lang, "labels": labels(lang), "contact": link.name, "elder": row["elder"],
        "community": row["community"], "what": t(f"kind.{row['kind']}", lang),
        "status": row["status"], "status_text": t(f"family.status.{row['status']}", lang),
        "event_time": row["event_time"].isoformat(),
        "where": describe(where, lang, datetime.now(row["event_time"].tzinfo), link=False),
        "map_link": where.map_link if where else None,
        "taken_by": row["acknowledged_by"] or (claimed["who"] if claimed else None),
        "outcome": t(f"outcome.{row['outcome']}", lang) if row["outcome"] else None,
        "resolved_at": row["resolved_at"].isoformat() if row["resolved_at"] else None,
        "timeline": [_entry(r, lang) for r in rows if _sentence(r, lang)],
        "last_event_id": rows[-1]["id"] if rows else 0,
    }


async def _rows(conn: db.Connection, incident_id: str, after: int) -> list[dict[str, Any]]:
    return list(await (await conn.execute(
        "SELECT id, at, kind, detail FROM incident_timeline WHERE incident_id = %s AND id > %s"
        " ORDER BY id LIMIT 500", (incident_id, after))).fetchall())


def _entry(row: dict[str, Any], lang: str) -> dict[str, Any]:
    return {"id": row["id"], "at": row["at"].isoformat(), "text": _sentence(row, lang)}


_ASSETS = {"family.js": "text/javascript", "family.css": "text/css"}


@router.get("/f/static/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    """The page's script and style (the webhooks app has no console static route)."""
    if name not in _ASSETS:
        raise HTTPException(404)
    return Response(_STATIC.joinpath(name).read_text("utf-8"),
                    media_type=f"{_ASSETS[name]}; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


@router.get("/f/{token}", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request, token: str) -> HTMLResponse:
    """The mobile page; its script reads the state and follows the stream."""
    link = await _link(request, token)
    async with request.app.state.pool.connection() as conn:
        await audit.record(conn, _who(link), "family_view", "incident", link.incident_id,
                           link.community_id, audit.client_of(request))
    html = _STATIC.joinpath("family.html").read_text("utf-8")
    html = html.replace('<html lang="zh-Hans">', f'<html lang="{link.language}">', 1)
    return HTMLResponse(html, headers=_HEADERS)


@router.get("/api/family/{token}")
async def family_state(request: Request, token: str) -> dict[str, Any]:
    """The incident as this contact may see it."""
    link = await _link(request, token)
    async with request.app.state.pool.connection() as conn:
        return await state(conn, link)


class FamilyAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["taking", "reached_elder"]


@router.post("/api/family/{token}/actions",
             openapi_extra={"requestBody": {"content": {"application/json": {
                 "schema": FamilyAction.model_json_schema()}}, "required": True}})
async def act(request: Request, token: str) -> dict[str, Any]:
    """"我来处理" takes responsibility as this contact (pending calls and SMS stop);
    "我已联系到老人" records that the elder was reached, and takes responsibility too if nobody
    has. Either is refused once the incident is resolved."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send JSON")  # a cross-site form cannot post JSON
    raw = await request.body()
    if len(raw) > 1024:
        raise HTTPException(413, "body too large")
    try:
        body = FamilyAction.model_validate_json(raw)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_input=False)) from exc
    link = await _link(request, token)
    who = t("family.who", link.language, name=link.name, priority=link.priority)
    async with request.app.state.pool.connection() as conn:
        status = await (await conn.execute(
            "SELECT status FROM incidents WHERE id = %s FOR UPDATE",
            (link.incident_id,))).fetchone()
        if status is None or status["status"] == "resolved":
            raise HTTPException(409, "this incident is already resolved")
        if body.action == "reached_elder":
            await timeline(conn, link.incident_id, "family_reached_elder", who=who)
        took = await lifecycle.acknowledge(conn, link.incident_id, who, "family_page")
        await audit.record(conn, _who(link), f"family_{body.action}", "incident",
                           link.incident_id, link.community_id, audit.client_of(request),
                           acknowledged=took)
    return {"acknowledged": took}


@router.get("/api/family/{token}/stream")
async def stream(request: Request, token: str, after: int | None = None) -> EventSourceResponse:
    """New timeline sentences as they are written; a reconnect resumes from Last-Event-ID.
    Ends when the link expires."""
    link = await _link(request, token)
    header = request.headers.get("last-event-id")
    start = int(header) if header and header.isdigit() else (after or 0)
    return EventSourceResponse(_events(request.app.state.pool, token, link, start), ping=10)


async def _events(pool: db.Pool, token: str, link: family.FamilyLink, after: int
                  ) -> AsyncIterator[dict[str, str]]:
    last = after
    while True:
        async with pool.connection() as conn:
            if await family.holder(conn, token) is None:
                yield {"event": "expired", "data": "{}"}
                return
            rows = await _rows(conn, link.incident_id, last)
        for row in rows:
            last = row["id"]
            if _sentence(row, link.language):
                yield {"event": "timeline", "id": str(last),
                       "data": json.dumps(_entry(row, link.language), ensure_ascii=False)}
        await asyncio.sleep(_POLL_S)
