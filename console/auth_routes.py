"""Login (with throttling), logout, and who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from console import throttle
from console.accounts import (
    AccountLocked,
    AddressThrottled,
    LoginRefused,
    authenticate,
)
from foundation import audit
from foundation.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL,
    CurrentPrincipal,
    Principal,
    close_session,
    open_session,
)

router = APIRouter()
RETRY = {"Retry-After": str(int(throttle.LOCK_FOR.total_seconds()))}


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=200)


def _me(principal: Principal, csrf: str) -> dict[str, Any]:
    return {
        "username": principal.staff_id, "name": principal.name, "role": principal.role,
        "community_ids": None if principal.community_ids is None
        else sorted(principal.community_ids),
        "sees_personal_data": principal.sees_personal_data, "csrf_token": csrf,
    }


@router.post("/api/v1/login")
async def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
    """Check the password; on success set the session cookie (HttpOnly, SameSite=Strict) and the
    CSRF cookie the console's JavaScript echoes in the X-CSRF-Token header."""
    pool = request.app.state.pool
    client = audit.client_of(request)
    async with pool.connection() as conn:
        try:
            principal = await authenticate(conn, body.username, body.password,
                                           audit.address_of(request))
        except AccountLocked:
            await audit.record(conn, body.username, "login_locked", client=client)
            await conn.commit()
            raise HTTPException(423, "account locked after repeated wrong passwords; "
                                     "try again in 15 minutes or ask a district admin",
                                headers=RETRY) from None
        except AddressThrottled:
            await audit.record(conn, body.username, "login_throttled", client=client)
            await conn.commit()
            raise HTTPException(429, "too many wrong passwords from this address; "
                                     "try again in 15 minutes", headers=RETRY) from None
        except LoginRefused:
            await audit.record(conn, body.username, "login_failed", client=client)
            await conn.commit()
            raise HTTPException(401, "wrong username or password") from None
        token, csrf = await open_session(conn, principal.staff_id)
        await audit.record(conn, principal, "login", client=client)
    secure = request.app.state.settings.public_base_url.startswith("https://")
    age = int(SESSION_TTL.total_seconds())
    response.set_cookie(SESSION_COOKIE, token, max_age=age, httponly=True, samesite="strict",
                        secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=age, httponly=False, samesite="strict",
                        secure=secure, path="/")
    return _me(principal, csrf)


@router.post("/api/v1/logout")
async def logout(
    request: Request, response: Response, principal: CurrentPrincipal,
) -> dict[str, str]:
    token = request.cookies.get(SESSION_COOKIE, "")
    async with request.app.state.pool.connection() as conn:
        await close_session(conn, token)
        await audit.record(conn, principal, "logout", client=audit.client_of(request))
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return {"status": "logged_out"}


@router.get("/api/v1/me")
async def me(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    return _me(principal, request.cookies.get(CSRF_COOKIE, ""))
