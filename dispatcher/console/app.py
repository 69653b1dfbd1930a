"""The console web app: pages, login, incident API, live stream (SSE) and health.

Everything under /api/v1 and every page needs a staff session (`eldercare.security`), except
login and the translations; /twilio/* (signed by Twilio), /healthz, /readyz and /metrics stay
open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from devices import api as devices_api
from dispatcher import stats, webhooks
from dispatcher.console import (
    auth_routes,
    elder_routes,
    incident_routes,
    pages,
    rules_routes,
    staff_routes,
)
from dispatcher.console.health import health
from eldercare import db
from eldercare.config import Settings
from eldercare.i18n import LANGUAGES, catalogue
from eldercare.security import current_principal

# Routers of other packages that serve staff: a session (and CSRF on writes) is required on
# every route, on top of the scope checks each route does with its own principal.
STAFF_ONLY = [Depends(current_principal)]


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
    app.include_router(devices_api.router, dependencies=STAFF_ONLY)
    app.include_router(webhooks.router)
    app.include_router(stats.router, dependencies=STAFF_ONLY)
    app.include_router(auth_routes.router)
    app.include_router(staff_routes.router)
    app.include_router(incident_routes.router)
    app.include_router(elder_routes.router)
    app.include_router(rules_routes.router)
    app.include_router(pages.router)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        checks = await health(settings)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready: migrations applied, Kafka/MQTT/database answer, the pool is open."""
        from eldercare.observability import readiness

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
