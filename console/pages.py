"""The console's pages and static assets. Pages are small HTML shells filled in by the page's
script from the API; without a session every page redirects to the login page."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from foundation.security import MaybePrincipal, Principal

router = APIRouter()

_STATIC = resources.files("console.static")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
# Pages whose script builds everything below the header share `shell.html`; the board and the
# login form have markup of their own.
_OWN = {"board": "index.html", "login": "login.html"}
_SHELL = "shell.html"


def _page(name: str, request: Request) -> HTMLResponse:
    """The page, telling its script the platform's default language (ELDERCARE_LANGUAGE); a
    choice made in the browser overrides it."""
    default = request.app.state.settings.language
    html = _STATIC.joinpath(_OWN.get(name, _SHELL)).read_text("utf-8")
    if name not in _OWN:
        html = html.replace("/static/{script}.js", f"/static/{name}.js", 1)
    html = html.replace(
        '<html lang="zh-Hans">', f'<html lang="{default}" data-default-lang="{default}">', 1)
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
               "Content-Security-Policy": "default-src 'self'; img-src 'self' data:;"
                                          " frame-ancestors 'none'"}
    return HTMLResponse(html, headers=headers)


def _signed_in(principal: Principal | None, page: str, request: Request) -> Response:
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    return _page(page, request)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return _page("login", request)


@router.get("/", response_model=None)
async def board(principal: MaybePrincipal, request: Request) -> Response:
    return _signed_in(principal, "board", request)


@router.get("/elders", response_model=None)
async def elders(principal: MaybePrincipal, request: Request) -> Response:
    return _signed_in(principal, "elders", request)


@router.get("/elders/{elder_id}", response_model=None)
async def elder(elder_id: str, principal: MaybePrincipal, request: Request) -> Response:
    return _signed_in(principal, "elder", request)


@router.get("/devices", response_model=None)
async def devices(principal: MaybePrincipal, request: Request) -> Response:
    return _signed_in(principal, "devices", request)


@router.get("/import", response_model=None)
async def ledger_import(principal: MaybePrincipal, request: Request) -> Response:
    """Ledger upload: which rows were imported, and each wrong row's number and reason."""
    return _signed_in(principal, "import", request)


@router.get("/reports", response_model=None)
async def reports(principal: MaybePrincipal, request: Request) -> Response:
    """The monthly supervision report of a community: figures and the Excel download."""
    return _signed_in(principal, "reports", request)


@router.get("/stats", response_model=None)
async def service_stats(principal: MaybePrincipal, request: Request) -> Response:
    """Service statistics per month with charts: incidents, response times, the share
    acknowledged within 60 s and 180 s against the target."""
    return _signed_in(principal, "stats", request)


@router.get("/rules", response_model=None)
async def rules(principal: MaybePrincipal, request: Request) -> Response:
    """A community's emergency rules: edit as JSON, preview who each ladder reaches, save."""
    return _signed_in(principal, "rules", request)


@router.get("/admin", response_model=None)
async def admin(principal: MaybePrincipal, request: Request) -> Response:
    """Staff logins and the audit log (the page tells other roles it is for district admins;
    the API refuses them)."""
    return _signed_in(principal, "admin", request)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or suffix not in (".js", ".css") or not _STATIC.joinpath(name).is_file():
        raise HTTPException(404)
    body = _STATIC.joinpath(name).read_text("utf-8")
    return Response(body, media_type=f"{_TYPES[suffix]}; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})
