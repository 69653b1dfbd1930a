"""A minimal web app with only what needs to face the internet, without the staff console:
Twilio's webhooks, the family page (its link's token is the credential) and /healthz. The
console app mounts the same routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from console import family_routes, guard
from dispatcher import webhooks
from foundation import db
from foundation.config import Settings


def create_app(settings: Settings) -> FastAPI:
    """The webhook app; `app.state.pool` and `app.state.settings` as in the console app."""
    pool = db.pool(settings.database_url, max_size=4)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(title="eldercare twilio webhooks", lifespan=lifespan)
    app.state.settings = settings
    app.state.pool = pool
    # Bodies capped (413), NUL bytes and over-deep JSON refused (422), as on the console.
    app.add_middleware(guard.InputGuard, max_body=settings.console_max_body,
                       max_import_body=settings.console_max_body)
    app.include_router(webhooks.router)
    app.include_router(family_routes.router)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app
