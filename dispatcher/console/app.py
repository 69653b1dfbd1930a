"""The console web app: board page, incident API, live stream (SSE) and health."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

from devices import api as devices_api
from dispatcher import stats, webhooks
from dispatcher.console import queries
from dispatcher.console.health import health
from dispatcher.incidents import timeline
from eldercare import db
from eldercare.config import Settings
from eldercare.i18n import LANGUAGES, catalogue


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


class Acknowledge(BaseModel):
    who: str


class Resolve(BaseModel):
    outcome: str
    notes: str = ""


def create_app(settings: Settings) -> FastAPI:
    pool = db.pool(settings.database_url, max_size=8)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(title="eldercare console", lifespan=lifespan)
    app.state.settings = settings
    app.state.pool = pool
    # Routers of other packages: the registry's admin API and Twilio's webhooks.
    app.include_router(devices_api.router)
    app.include_router(webhooks.router)
    app.include_router(stats.router)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        checks = await health(settings)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        page = resources.files("dispatcher.console.static").joinpath("index.html")
        return page.read_text("utf-8")

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in {"console.js", "console.css"}:
            raise HTTPException(404)
        body = resources.files("dispatcher.console.static").joinpath(name).read_text("utf-8")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(body, media_type=f"{kind}; charset=utf-8")

    @app.get("/api/v1/i18n/{lang}")
    async def i18n(lang: str) -> dict[str, str]:
        if lang not in LANGUAGES:
            raise HTTPException(404, f"language {lang!r} not available: {', '.join(LANGUAGES)}")
        return catalogue(lang)

    @app.get("/api/v1/incidents")
    async def list_incidents(include_resolved: bool = False) -> Response:
        async with pool.connection() as conn:
            items = await queries.incidents(conn, include_resolved)
            last = await queries.last_timeline_id(conn)
        return Response(
            _json({"incidents": items, "last_event_id": last,
                   "dry_run": not settings.twilio_configured}),
            media_type="application/json",
        )

    @app.get("/api/v1/incidents/{incident_id}")
    async def get_incident(incident_id: str) -> Response:
        async with pool.connection() as conn:
            items = await queries.incidents(conn, True, incident_id)
        if not items:
            raise HTTPException(404, "no such incident")
        return Response(_json(items[0]), media_type="application/json")

    @app.post("/api/v1/incidents/{incident_id}/acknowledge")
    async def acknowledge(incident_id: str, body: Acknowledge) -> dict[str, str]:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE incidents SET status = 'acknowledged', acknowledged_at = now(),"
                " acknowledged_by = %s WHERE id = %s AND status IN ('open', 'notifying')",
                (body.who, incident_id),
            )
            if cur.rowcount == 0:
                raise HTTPException(409, "incident is not open")
            await conn.execute(
                "UPDATE escalation_steps SET status = 'cancelled', finished_at = now()"
                " WHERE incident_id = %s AND status = 'pending'", (incident_id,),
            )
            await timeline(conn, incident_id, "acknowledged", who=body.who, via="console")
        return {"status": "acknowledged"}

    @app.post("/api/v1/incidents/{incident_id}/resolve")
    async def resolve(incident_id: str, body: Resolve) -> dict[str, str]:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE incidents SET status = 'resolved', resolved_at = now(), outcome = %s,"
                " notes = %s WHERE id = %s AND status <> 'resolved'",
                (body.outcome, body.notes, incident_id),
            )
            if cur.rowcount == 0:
                raise HTTPException(409, "incident is already resolved or unknown")
            await conn.execute(
                "UPDATE escalation_steps SET status = 'cancelled', finished_at = now()"
                " WHERE incident_id = %s AND status = 'pending'", (incident_id,),
            )
            await timeline(conn, incident_id, "resolved", outcome=body.outcome)
        return {"status": "resolved"}

    @app.get("/api/v1/stream")
    async def stream(request: Request, after: int | None = None) -> EventSourceResponse:
        """Timeline rows as written; a reconnecting client catches up from Last-Event-ID."""
        header = request.headers.get("last-event-id")
        start = int(header) if header and header.isdigit() else after
        return EventSourceResponse(_timeline_events(settings, pool, start), ping=10)

    return app


async def _timeline_events(
    settings: Settings, pool: db.Pool, after: int | None,
) -> AsyncIterator[dict[str, str]]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as listener:
        await listener.execute("LISTEN incident_timeline")
        async with pool.connection() as conn:
            last = after if after is not None else await queries.last_timeline_id(conn)
        yield {"event": "hello", "data": _json({"last_event_id": last}), "id": str(last)}
        while True:
            async with pool.connection() as conn:
                rows = await queries.timeline_since(conn, last)
            for row in rows:
                last = row["id"]
                yield {"event": "timeline", "id": str(last), "data": _json(row)}
            # Wake on NOTIFY; the timeout is a safety net for a notification lost in a reconnect.
            async for _ in listener.notifies(timeout=5.0, stop_after=1):
                break
            await asyncio.sleep(0)
