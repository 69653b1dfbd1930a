"""The console web app: pages, login, incident API, live stream (SSE) and health.

Everything under /api/v1 and every page needs a staff session (`foundation.security`), except
login and the translations; /twilio/* (signed by Twilio), /healthz, /readyz and /metrics stay
open. The API docs (/docs, /openapi.json) are for logged-in district admins only. Bodies are
capped and malformed input is refused with 422 (`guard`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console import (
    auth_routes,
    elder_routes,
    family_routes,
    guard,
    incident_routes,
    live,
    pages,
    report_routes,
    rules_routes,
    staff_routes,
)
from console.health import health
from devices import api as devices_api
from dispatcher import stats, webhooks
from foundation import db
from foundation.config import Settings
from foundation.i18n import LANGUAGES, catalogue
from foundation.security import CurrentPrincipal, current_principal, require_district_admin

# Routers of other packages that serve staff: a session (and CSRF on writes) is required on
# every route, on top of the scope checks each route does with its own principal.
STAFF_ONLY = [Depends(current_principal)]


def create_app(settings: Settings) -> FastAPI:
    pool = db.pool(settings.database_url, max_size=8)

    streams = live.Fanout(settings.database_url, pool, settings.console_streams_per_user)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        async with streams.running():
            yield
        await pool.close()

    # No public docs: /docs and /openapi.json below are for logged-in admins.
    app = FastAPI(title="eldercare console", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.settings = settings
    app.state.pool = pool
    app.state.streams = streams
    app.add_middleware(guard.InputGuard, max_body=settings.console_max_body,
                       max_import_body=settings.console_max_import_body)

    @app.exception_handler(psycopg.DataError)
    async def bad_value(request: Request, exc: psycopg.DataError) -> JSONResponse:
        """A value PostgreSQL cannot take (out of range, NUL byte...) is the caller's error."""
        return JSONResponse({"detail": [{"loc": ["body"], "msg": f"invalid value: {exc}",
                                         "type": "value_error"}]}, status_code=422)

    docs_only = "only district admins read the API documentation"

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(principal: CurrentPrincipal) -> JSONResponse:
        require_district_admin(principal, docs_only)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(principal: CurrentPrincipal) -> HTMLResponse:
        require_district_admin(principal, docs_only)
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)
    # Routers of other packages: the registry's admin API and Twilio's webhooks.
    app.include_router(devices_api.router, dependencies=STAFF_ONLY)
    app.include_router(webhooks.router)
    app.include_router(stats.router, dependencies=STAFF_ONLY)
    app.include_router(auth_routes.router)
    app.include_router(staff_routes.router)
    app.include_router(incident_routes.router)
    app.include_router(live.router)
    app.include_router(elder_routes.router)
    app.include_router(rules_routes.router)
    app.include_router(pages.router)
    app.include_router(report_routes.router)
    # The family page: no session, the link's token is the credential (dispatcher/family.py).
    app.include_router(family_routes.router)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        checks = await health(settings)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready: migrations applied, Kafka/MQTT/database answer, the pool is open."""
        from foundation.observability import readiness

        checks = await readiness(settings, "console", started=not pool.closed)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, "notify": settings.notify, **checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/i18n/{lang}")
    async def i18n(lang: str) -> dict[str, str]:
        if lang not in LANGUAGES:
            raise HTTPException(404, f"language {lang!r} not available: {', '.join(LANGUAGES)}")
        return catalogue(lang)

    return app
